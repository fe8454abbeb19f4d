"""Batched thin QR of tall panels (B, n, r) without a per-matrix loop: CholeskyQR2, shifted when needed.

Why not torch.linalg.qr: on CUDA it builds Q matrix by matrix.  CholeskyQR is two batched GEMMs and an r x r
Cholesky per panel.  Its weakness — the Gram matrix squares the condition number — is handled by
  * forming the Gram matrix and the Cholesky factor in float64 (good for cond(Y) up to ~1e7), and
  * a second pass (CholeskyQR2) that restores orthogonality to working precision (skipped for float32 and
    narrower results when every panel's cond(Y) <= 1e3: one float64 pass is then already below their rounding), and
  * for panels whose Cholesky fails or whose factor is too ill-conditioned, one *shifted* pass first
    (Fukaya et al., shifted CholeskyQR3, SISC 2020), still batched; and Householder QR only for panels that
    are numerically rank deficient even then (r larger than the rank of the data), which is rare.
"""
from __future__ import annotations

from typing import Tuple

import torch

from ._threads import single_threaded
from .jacobi import jacobi_svd

Tensor = torch.Tensor

# CholeskyQR in float64 is safe while cond(Y)^2 * 2^-53 << 1; beyond 1e7 take the shifted path.
_MAX_COND = 1e7
# One float64 pass leaves ||Q^T Q - I|| ~ eps64 cond(Y)^2: for a float32 (or narrower) result that is below its
# rounding while cond(Y) <= 1e3 (1e-10), so the second pass runs only for float64 results or worse panels.
_ONE_PASS_COND = 1e3


def _chol_pass(Y: Tensor, shift: Tensor | None = None,
               gram: Tensor | None = None) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """One CholeskyQR pass in float64: Y = Q R.  Returns (Q, R, ok, cond): ok (B,) bool, cond (B,) an upper bound
    on cond_2(Y) (||R||_F ||R^-1||_F).  ``gram``: Y^T Y (B, r, r) float64 when the caller already has it.  Works on
    the rows Y^T (r, n): Q^T = R^-T Y^T is a wide (r x r) @ (r x n) GEMM (several times faster than Y @ R^-1, whose
    output has only r columns); Q comes back as the transpose of a contiguous (B, r, n) tensor."""
    Yt = Y.transpose(-1, -2).contiguous()
    G = Yt @ Yt.transpose(-1, -2) if gram is None else gram
    if shift is not None:
        G = G + shift[:, None, None] * torch.eye(G.shape[-1], dtype=G.dtype, device=G.device)
    with single_threaded(G):
        L, info = torch.linalg.cholesky_ex(G)
    diag = L.diagonal(dim1=-2, dim2=-1)
    dmax = diag.abs().amax(-1)
    dmin = diag.abs().amin(-1)
    ok = (info == 0) & torch.isfinite(diag).all(-1) & (dmin * _MAX_COND > dmax)
    # Guard the solve for failed panels (they are redone below); identity keeps it finite.
    eye = torch.eye(L.shape[-1], dtype=L.dtype, device=L.device).expand_as(L)
    L = torch.where(ok[:, None, None], L, eye)
    R = L.transpose(-1, -2)
    # Y R^{-1} as a GEMM with the small inverse: a batched triangular solve against the tall panel runs
    # matrix by matrix on CPU (measured ~10x slower here); inverting r x r and multiplying is one batched GEMM.
    # The second CholeskyQR pass cleans up the extra rounding.
    eye_r = torch.eye(R.shape[-1], dtype=R.dtype, device=R.device).expand_as(R)
    with single_threaded(R):
        Rinv = torch.linalg.solve_triangular(R, eye_r, upper=True)
    Q = (Rinv.transpose(-1, -2) @ Yt).transpose(-1, -2)
    cond = torch.linalg.matrix_norm(R) * torch.linalg.matrix_norm(Rinv)  # >= cond_2(Y) (Frobenius norms)
    return Q, R, ok, cond


def cholesky_qr(Y: Tensor) -> Tuple[Tensor, Tensor]:
    """Thin QR of a batch of panels: Y (B, n, r), n >= r -> Q (B, n, r) orthonormal, R (B, r, r) upper.

    Computed in float64, returned in Y's dtype.  Q^T Q = I to working precision for any input, including
    rank-deficient panels (then R has (near-)zero diagonal entries and Q completes an orthonormal basis).
    """
    if Y.dim() != 3 or Y.shape[-2] < Y.shape[-1]:
        raise ValueError(f"Y: expected a batch of tall panels (B, n, r) with n >= r, got shape {tuple(Y.shape)}")
    dtype = Y.dtype
    Y64 = Y.to(torch.float64)
    Q1, R1, ok1, cond = _chol_pass(Y64)
    if dtype != torch.float64 and bool(ok1.all()) and float(cond.max()) <= _ONE_PASS_COND:
        return Q1.to(dtype), R1.to(dtype)
    Q2, R2, ok2, _ = _chol_pass(Q1)
    Q, R, ok = Q2, R2 @ R1, ok1 & ok2
    if not bool(ok.all()):
        bad = (~ok).nonzero().squeeze(1)
        Yb = Y64[bad]
        n, r = Yb.shape[-2:]
        norm2 = torch.linalg.matrix_norm(Yb, ord="fro") ** 2
        shift = 11.0 * (n * r + r * (r + 1)) * torch.finfo(torch.float64).eps * norm2
        S1, T1, okA, _ = _chol_pass(Yb, shift)
        S2, T2, okB, _ = _chol_pass(S1)
        S3, T3, okC, _ = _chol_pass(S2)
        Qb, Rb, okb = S3, T3 @ T2 @ T1, okA & okB & okC
        if not bool(okb.all()):
            # Numerically rank deficient: Householder for those few panels only.
            worst = (~okb).nonzero().squeeze(1)
            Qh, Rh = torch.linalg.qr(Yb[worst])
            Qb[worst], Rb[worst] = Qh, Rh
        Q[bad], R[bad] = Qb, Rb
    return Q.to(dtype), R.to(dtype)


def orthonormalize(Y: Tensor) -> Tensor:
    """Orthonormal basis Q (B, n, r) of the column spaces of Y (B, n, r) (see :func:`cholesky_qr`)."""
    return cholesky_qr(Y)[0]


def orthonormalize_with_gram(Y: Tensor, gram: Tensor, dtype: torch.dtype) -> Tensor:
    """:func:`orthonormalize` of float64 panels Y (B, n, r) whose Gram matrix Y^T Y (B, r, r) float64 the caller
    has already formed (e.g. alongside a Gram-Schmidt pass), for a result to be rounded to ``dtype``: the first
    CholeskyQR pass starts from ``gram``; the second runs as in :func:`cholesky_qr` (skipped for a ``dtype``
    narrower than float64 when every panel's cond <= 1e3); when the first pass fails for any panel, all of
    :func:`cholesky_qr` reruns from Y (its shifted and Householder fallbacks).  Returns float64 Q (B, n, r)."""
    Q1, _, ok1, cond = _chol_pass(Y, gram=gram)
    if not bool(ok1.all()):
        return cholesky_qr(Y)[0]
    if dtype != torch.float64 and float(cond.max()) <= _ONE_PASS_COND:
        return Q1
    Q2, _, ok2, _ = _chol_pass(Q1)
    return Q2 if bool(ok2.all()) else cholesky_qr(Y)[0]


def small_svd(R: Tensor, method: str = "auto") -> Tuple[Tensor, Tensor, Tensor]:
    """SVD of a batch of small matrices (B, m, m).  "auto": torch.linalg.svd, except on CUDA for m > 32, where
    torch loops matrix by matrix and the batched one-sided Jacobi of :mod:`.jacobi` is used instead."""
    if method == "auto":
        method = "jacobi" if (R.is_cuda and R.shape[-1] > 32) else "torch"
    if method == "jacobi":
        return jacobi_svd(R)
    if method == "torch":
        with single_threaded(R):
            return torch.linalg.svd(R)
    raise ValueError(f"method: expected 'auto', 'torch' or 'jacobi', got {method!r}")


def thin_svd(W: Tensor, method: str = "auto") -> Tuple[Tensor, Tensor, Tensor]:
    """SVD of tall panels W (B, n, r) = P diag(S) Rh, via W = Q R and the small (B, r, r) SVD of R.

    Returns P (B, n, r), S (B, r) descending, Rh (B, r, r).  ``method`` picks the small SVD (:func:`small_svd`).
    """
    Q, R = cholesky_qr(W)
    A, S, Rh = small_svd(R.to(torch.float64), method)
    return (Q.to(torch.float64) @ A).to(W.dtype), S.to(W.dtype), Rh.to(W.dtype)
