"""Space-filling vector quantization (Vali & Bäckström, TMLR 2025): the curve module and its training recipe."""
from .stages import stage_sizes
from .training_log import SFVQStageLog, SFVQTrainingLog
from .model import SFVQ

__all__ = ["SFVQ", "SFVQStageLog", "SFVQTrainingLog", "stage_sizes"]
