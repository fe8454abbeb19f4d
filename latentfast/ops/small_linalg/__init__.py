"""Small batched linear algebra for the randomized SVD: (B, n, r) panels and (B, r, r) problems."""
from .cholesky_qr import cholesky_qr, orthonormalize, thin_svd

__all__ = ["cholesky_qr", "orthonormalize", "thin_svd"]
