"""latentfast: fast unsupervised interpretation of GAN latent spaces.

Local Basis (Choi et al., ICLR 2022) and space-filling vector quantization (Vali & Bäckström, TMLR 2025),
with pure-PyTorch references and fused kernels behind one small API.
"""
from ._dispatch import BackendUnavailable
from .ops.segment_assign import PointAssignment, SegmentAssignment, nearest_point, segment_assign

__version__ = "0.1.0"

__all__ = [
    "BackendUnavailable",
    "PointAssignment",
    "SegmentAssignment",
    "nearest_point",
    "segment_assign",
]
