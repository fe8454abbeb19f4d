"""Local Basis: local coordinates of GAN latent spaces (basis), traversal, Grassmannian metrics, warpage."""
from .basis import LocalBasis, local_basis
from .grassmann import grassmann_distance, pairwise_grassmann, principal_angles
from .traverse import IterativeTraversal, apply_to_layers, traverse_iterative, traverse_linear
from .warpage import Warpage, WarpageRows, WarpageStats, warpage, warpage_rows

__all__ = [
    "LocalBasis", "local_basis", "grassmann_distance", "pairwise_grassmann", "principal_angles",
    "IterativeTraversal", "apply_to_layers", "traverse_iterative", "traverse_linear",
    "Warpage", "WarpageRows", "WarpageStats", "warpage", "warpage_rows",
]
