"""Small batched linear algebra for the randomized SVD: (B, n, r) panels and (B, r, r) problems, with no
per-matrix loop on CUDA (CholeskyQR2 instead of Householder QR; one-sided Jacobi instead of torch's SVD past 32)."""
from .cholesky_qr import cholesky_qr, orthonormalize, orthonormalize_with_gram, small_svd, thin_svd
from .gram_eig import gram_eigvalsh
from .jacobi import jacobi_svd
from .triton_jacobi import batched_eigh

__all__ = ["cholesky_qr", "orthonormalize", "orthonormalize_with_gram", "small_svd", "thin_svd", "jacobi_svd",
           "batched_eigh", "gram_eigvalsh"]
