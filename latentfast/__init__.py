"""latentfast: fast unsupervised interpretation of GAN latent spaces.

Local Basis (Choi et al., ICLR 2022) and space-filling vector quantization (Vali & Bäckström, TMLR 2025),
with pure-PyTorch references and fused kernels behind one small API.
"""
from ._dispatch import BackendUnavailable
from .localbasis import (
    IterativeTraversal,
    LocalBasis,
    Warpage,
    WarpageRows,
    apply_to_layers,
    grassmann_distance,
    local_basis,
    pairwise_grassmann,
    traverse_iterative,
    traverse_linear,
    warpage,
    warpage_rows,
)
from .ops.mlp_jvp.reference import MLPSpec
from .ops.segment_assign import PointAssignment, SegmentAssignment, nearest_point, segment_assign
from .baselines import GANSpaceDirections, SeFaDirections, ganspace_directions, sefa_directions
from .sfvq import SFVQ, SFVQStageLog, SFVQTrainingLog

__version__ = "0.1.0"

__all__ = [
    "BackendUnavailable",
    "IterativeTraversal",
    "LocalBasis",
    "MLPSpec",
    "Warpage",
    "WarpageRows",
    "apply_to_layers",
    "grassmann_distance",
    "local_basis",
    "pairwise_grassmann",
    "traverse_iterative",
    "traverse_linear",
    "warpage",
    "warpage_rows",
    "PointAssignment",
    "SegmentAssignment",
    "nearest_point",
    "segment_assign",
    "GANSpaceDirections",
    "SeFaDirections",
    "SFVQ",
    "SFVQStageLog",
    "SFVQTrainingLog",
    "ganspace_directions",
    "sefa_directions",
]
