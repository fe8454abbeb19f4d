"""Grassmannian distances between subspaces given by orthonormal bases (..., n, k).

Principal angles theta_1..theta_k between span(A) and span(B): cos theta are the singular values of A^T B,
sin theta those of B - A (A^T B) (the part of B orthogonal to A), in reverse order (CS decomposition).
arccos alone (the official code's way) cannot resolve small angles: d theta = d cos / sin theta, so in float32
nothing below ~3e-4 rad survives.  We take theta = atan2(sin, cos), accurate over the whole range [0, pi/2].

metrics:  "geodesic"   ||theta||_2            (the paper's)
          "projection" sin theta_max          (= ||A A^T - B B^T||_2)
          "chordal"    ||sin theta||_2
"""
from __future__ import annotations

from typing import Optional

import torch

from .. import _checks
from ..ops.small_linalg import gram_eig
from ..ops.small_linalg._threads import single_threaded

Tensor = torch.Tensor
METRICS = ("geodesic", "projection", "chordal")

# pairwise_grassmann gets the angles of most pairs from the cosines alone (one GEMM + tiny eigenproblems); pairs
# whose largest angle is below this are recomputed with the orthogonal component (arccos is inaccurate there).
_SMALL_ANGLE = 0.05


def _validate_basis(name: str, A) -> Tensor:
    A = _checks.as_tensor(name, A)
    _checks.check_floating(name, A)
    if A.dim() < 2:
        raise ValueError(f"{name}: expected an orthonormal basis of shape (..., n, k), got shape {tuple(A.shape)}")
    if A.shape[-1] > A.shape[-2] or A.shape[-1] == 0:
        raise ValueError(f"{name}: expected 1 <= k <= n for a basis of shape (..., n, k), got shape {tuple(A.shape)}")
    _checks.check_finite(name, A)
    _checks.check_orthonormal(name, A)
    return A


def _to_compute(A: Tensor) -> Tensor:
    """A validated basis in the dtype the angles are computed in.  float16/bfloat16 bases are orthonormal only
    to their own precision (|Q^T Q - I| ~ eps = 8e-3 for bf16), which the angle formulas would read as angles
    of that size: they are re-orthonormalised in float32 (same span), so identical spans give 0."""
    compute = _checks.float_compute_dtype(A.dtype)
    if compute == A.dtype:
        return A
    with single_threaded(A):
        return torch.linalg.qr(A.to(compute)).Q


def _singular_values(M: Tensor) -> Tensor:
    """Singular values, ascending, of a batch M (..., m, k): the native batched Jacobi on the float64 Gram matrix
    where the extension serves (absolute error ~1e-8 |M|, relative ~1e-15 when all are small), else svdvals."""
    if not gram_eig.OP.backends["native"].why_not(M):
        return gram_eig.gram_eigvalsh(M, backend="native").clamp_min(0.0).sqrt().to(M.dtype)
    with single_threaded(M):
        return torch.linalg.svdvals(M).flip(-1)


def principal_angles(A: Tensor, B: Tensor) -> Tensor:
    """Principal angles (..., k), ascending, between orthonormal bases A, B (..., n, k) (not validated)."""
    M = A.transpose(-1, -2) @ B
    cos = _singular_values(M).clamp(0.0, 1.0).flip(-1)  # descending -> angles ascending
    sin = _singular_values(B - A @ M).clamp(0.0, 1.0)  # ascending
    return torch.atan2(sin, cos)


def _from_angles(theta: Tensor, metric: str) -> Tensor:
    if metric == "geodesic":
        return theta.norm(dim=-1)
    if metric == "projection":
        return torch.sin(theta.amax(dim=-1))
    return torch.sin(theta).norm(dim=-1)


def grassmann_distance(A, B, metric: str = "geodesic") -> Tensor:
    """Distance between span(A) and span(B) for orthonormal bases A, B (..., n, k) (broadcast over ...).

    Returns (...) in the promoted dtype of A and B (float16/bfloat16 are computed in float32).  Raises
    ValueError when the shapes differ in n or k, when a basis is not orthonormal (checked cheaply:
    |Q^T Q - I| <= ``_checks.orthonormal_tolerance`` of its dtype: 1e-5, 4 eps for half types), or on NaN/Inf.
    """
    _checks.check_choice("metric", metric, METRICS)
    A = _validate_basis("A", A)
    B = _validate_basis("B", B)
    if A.shape[-2:] != B.shape[-2:]:
        raise ValueError(f"B: expected bases of the same (n, k) as A {tuple(A.shape[-2:])}, got {tuple(B.shape[-2:])}")
    dtype = torch.promote_types(A.dtype, B.dtype)
    compute = _checks.float_compute_dtype(dtype)
    A, B = _to_compute(A).to(compute), _to_compute(B).to(compute)
    return _from_angles(principal_angles(A, B), metric).to(dtype)


def _cosines(M: Tensor, method: str = "auto") -> Tensor:
    """Singular values, ascending, of a batch of small float64 matrices M (..., k, k): the cosines.

    "eigvalsh" (the CPU's choice): cos^2 = eigenvalues of M^T M (:func:`gram_eigvalsh`: the native batched
    Jacobi, or torch's eigvalsh without the extension); float64 keeps cos accurate to ~1e-8 near pi/2, and small
    angles, where squaring loses them, are refined by the caller.  M may be float32 (converted inside).
    "jacobi" (the GPU's choice): the batched one-sided Jacobi SVD, memory O(batch k^2) — torch's batched
    eigvalsh on CUDA asked for a 91 GiB workspace for 167,000 10 x 10 matrices (H100, torch 2.11).
    """
    if method == "auto":
        method = "jacobi" if M.is_cuda else "eigvalsh"
    if method == "jacobi":
        from ..ops.small_linalg.jacobi import jacobi_svd

        k = M.shape[-1]
        flat = M.reshape(-1, k, k)
        s = jacobi_svd(flat)[1] if flat.shape[0] else flat.new_zeros(0, k)
        return s.view(M.shape[:-1]).clamp(0.0, 1.0).flip(-1)
    return gram_eig.gram_eigvalsh(M).clamp(0.0, 1.0).sqrt()


def pairwise_grassmann(bases, metric: str = "geodesic", *, chunk_size: Optional[int] = None) -> Tensor:
    """All-pairs distances (P, P) of a stack of orthonormal bases (P, n, k).

    One GEMM per block of rows gives every A_i^T A_j; the k x k eigenvalues of M^T M give the cosines.  Pairs whose
    largest angle is below 0.05 rad are recomputed with :func:`principal_angles` (accurate small distances).
    Memory: chunk_size x P x k x k per block (default keeps it near 16M elements).  Symmetric, zero diagonal,
    in the bases' dtype (float16/bfloat16 are computed in float32).
    """
    _checks.check_choice("metric", metric, METRICS)
    X = _validate_basis("bases", bases)
    _checks.check_ndim("bases", X, 3, "(P, n, k)")
    out_dtype = X.dtype
    X = _to_compute(X)
    P, n, k = X.shape
    if chunk_size is None:
        chunk_size = max(1, (1 << 24) // max(P * k * k, 1))
    chunk_size = _checks.check_int("chunk_size", chunk_size, low=1)
    flat = X.transpose(1, 2).reshape(P * k, n)  # rows: (basis, column)
    out = torch.zeros(P, P, dtype=X.dtype, device=X.device)
    for s in range(0, P, chunk_size):
        e = min(P, s + chunk_size)
        # only pairs (i, j) with j > i: compute columns from s on, then mirror
        G = flat[s * k:e * k] @ flat[s * k:].T  # ((e-s) k, (P-s) k)
        M = G.view(e - s, k, P - s, k).permute(0, 2, 1, 3)  # (e-s, P-s, k, k), a view
        if M.is_cuda:
            M = M.to(torch.float64)
        theta = torch.arccos(_cosines(M)).flip(-1).to(X.dtype)  # ascending angles
        # When every angle is small the distance itself is small and arccos's absolute error (~sqrt(eps of the
        # inputs)) would be a large relative error: recompute those pairs.  A tiny angle beside a large one
        # barely moves any of the metrics, so it is left as is.
        small = theta[..., -1] < _SMALL_ANGLE
        if bool(small.any()):
            ii, jj = small.nonzero(as_tuple=True)
            theta[ii, jj] = principal_angles(X[s + ii], X[s + jj])
        d = _from_angles(theta, metric)
        out[s:e, s:] = d
    out = torch.triu(out, diagonal=1)
    return (out + out.T).to(out_dtype)
