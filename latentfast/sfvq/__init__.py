"""Space-filling vector quantization (Vali & Bäckström, TMLR 2025): the curve module and its training recipe."""
from .fit import SFVQStageLog, SFVQTrainingLog, stage_sizes
from .model import SFVQ

__all__ = ["SFVQ", "SFVQStageLog", "SFVQTrainingLog", "stage_sizes"]
