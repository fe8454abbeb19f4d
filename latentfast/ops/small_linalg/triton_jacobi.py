"""Batched symmetric eigendecomposition of small matrices (n <= 128): parallel cyclic Jacobi, one matrix per
Triton program, with the same algorithm in batched PyTorch as the reference (issue 15, item 1(b)).

Why: the Rayleigh-Ritz step of the randomized local basis needs the eigenpairs of B independent small
symmetric matrices (the (q+1) r x (q+1) r Gram matrix of each latent's Krylov panel).  On CUDA, torch's
batched eigh is batched only up to 32 x 32 and goes matrix by matrix above; a program per matrix keeps the
whole matrix on chip and needs no launch per matrix.

Algorithm (two-sided Jacobi, round-robin ordering).  n is padded to N = a power of two with zero rows and
columns (their rotations are the identity; their zero eigenvalues are dropped).  Round r of a sweep pairs
every index i with partner(i) (the circle method: i + partner(i) = 2 r mod N - 1, with N - 1 paired to r), so
N / 2 disjoint rotations apply at once:  A <- J^T A J,  V <- V J.  For a pair p < q (Golub & Van Loan 8.4.2):
tau = (a_qq - a_pp) / (2 a_pq),  t = sign(tau) / (|tau| + sqrt(1 + tau^2)),  c = 1 / sqrt(1 + t^2),  s = t c,
row p <- c row p - s row q, row q <- s row p + c row q, and the same for columns and for V's columns.  Per
index that is  X_i <- c X_i + s_i X_partner(i)  with s_i = -s for the smaller index of its pair and +s for the
larger one: two gathers and an elementwise update per round, (N - 1) rounds per sweep.  Both members of a
pair read a_pq from the upper triangle (A drifts from exact symmetry by rounding; two slightly different
angles for one rotation would make J non-orthogonal and stall convergence on clustered eigenvalues).  Stops when the
off-diagonal mass (summed directly, not as ||A||^2 - sum diag^2, which cancels at sqrt(eps)) is below
tol^2 of the total (default tol = 4 n eps) or after ``max_sweeps``.  Eigenvalues
are the diagonal (to about eps ||A|| each), returned ascending like torch.linalg.eigh, with V's columns.
"""
from __future__ import annotations

import functools
import os
from typing import List, Optional, Tuple

import torch

from ._threads import single_threaded

Tensor = torch.Tensor

#: largest n the Triton kernel takes: the matrix, V and two gathered copies live in one program's registers
MAX_TRITON_N = 128


def _check(A: Tensor) -> Tensor:
    if not isinstance(A, torch.Tensor) or A.dim() != 3 or A.shape[1] != A.shape[2]:
        shape = tuple(A.shape) if isinstance(A, torch.Tensor) else type(A).__name__
        raise ValueError(f"A: expected a batch of square matrices (B, n, n), got {shape}")
    if A.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"A: expected float32 or float64, got {A.dtype}")
    return A


def _pad(n: int) -> int:
    p = 2
    while p < n:
        p *= 2
    return p


def _tol(n: int, dtype: torch.dtype, tol: Optional[float]) -> float:
    return float(tol) if tol is not None else 4.0 * n * torch.finfo(dtype).eps


def _sorted(w: Tensor, V: Tensor, n: int) -> Tuple[Tensor, Tensor]:
    """Drop the padding, sort ascending (like torch.linalg.eigh) and permute V's columns alike."""
    w, V = w[:, :n], V[:, :n, :n]
    w, order = torch.sort(w, dim=1)
    return w, V.gather(2, order.unsqueeze(1).expand(-1, n, -1))


@functools.lru_cache(maxsize=16)
def _partners(N: int, device: str) -> Tensor:
    """(N - 1, N) int64: partner of every index in each round of the circle method."""
    i = torch.arange(N)
    rounds = []
    for r in range(N - 1):
        j = (2 * r - i) % (N - 1)
        rounds.append(torch.where(i == N - 1, torch.tensor(r), torch.where(j == i, torch.tensor(N - 1), j)))
    return torch.stack(rounds).to(device)


def jacobi_eigh_reference(A: Tensor, *, max_sweeps: int = 20, tol: Optional[float] = None) -> Tuple[Tensor, Tensor]:
    """Eigenvalues (B, n) ascending and eigenvectors (B, n, n) (columns) of symmetric A (B, n, n), float32/64.

    The Triton kernel's algorithm in batched PyTorch (any device, any n): every round is a few (B, N, N) ops.
    Only the lower and upper triangle's average is used ((A + A^T) / 2).  Raises ValueError/TypeError on shape
    or dtype.
    """
    A = _check(A)
    with single_threaded(A):  # tiny ops: threads only add barrier waits (see _threads.py)
        return _jacobi_reference(A, max_sweeps, _tol(A.shape[1], A.dtype, tol) ** 2)


def _jacobi_reference(A: Tensor, max_sweeps: int, tol2: float) -> Tuple[Tensor, Tensor]:
    B, n, _ = A.shape
    N = _pad(n)
    a = torch.zeros(B, N, N, dtype=A.dtype, device=A.device)
    a[:, :n, :n] = 0.5 * (A + A.transpose(1, 2))
    V = torch.eye(N, dtype=A.dtype, device=A.device).expand(B, N, N).contiguous()
    i = torch.arange(N, device=A.device)
    fro2 = (a * a).sum((1, 2))
    offdiag = ~torch.eye(N, dtype=torch.bool, device=A.device)
    for _ in range(max_sweeps):
        off2 = (a * a * offdiag).sum((1, 2))  # summed directly: fro2 - sum(diag^2) cancels at sqrt(eps)
        if not bool((off2 > tol2 * fro2).any()):
            break
        for partner in _partners(N, str(A.device)):
            d = a.diagonal(dim1=1, dim2=2)
            lower = (i < partner).unsqueeze(0)
            # a[p, q] with p < q for both members of each pair: a drifts from exact symmetry by rounding, and
            # the two halves of one rotation must use bitwise the same angle (else J is not orthogonal)
            a_ip = a.gather(2, partner.view(1, N, 1).expand(B, N, 1)).squeeze(2)  # a[i, partner(i)]
            a_pi = a.gather(1, partner.view(1, 1, N).expand(B, 1, N)).squeeze(1)  # a[partner(i), i]
            apq = torch.where(lower, a_ip, a_pi)
            app = torch.where(lower, d, d[:, partner])
            aqq = torch.where(lower, d[:, partner], d)
            c, s = _rotation(app, aqq, apq)
            si = torch.where(lower, -s, s)
            a = c.unsqueeze(2) * a + si.unsqueeze(2) * a[:, partner, :]
            a = a * c.unsqueeze(1) + a[:, :, partner] * si.unsqueeze(1)
            V = V * c.unsqueeze(1) + V[:, :, partner] * si.unsqueeze(1)
    return _sorted(a.diagonal(dim1=1, dim2=2), V, n)


def _rotation(app: Tensor, aqq: Tensor, apq: Tensor) -> Tuple[Tensor, Tensor]:
    """(c, s) of the Jacobi rotation that zeroes a_pq (identity where a_pq = 0)."""
    nz = apq != 0
    tau = (aqq - app) / torch.where(nz, 2.0 * apq, torch.ones_like(apq))
    sgn = torch.where(tau >= 0, 1.0, -1.0).to(tau.dtype)
    t = torch.where(nz, sgn / (tau.abs() + torch.sqrt(1.0 + tau * tau)), torch.zeros_like(tau))
    c = 1.0 / torch.sqrt(1.0 + t * t)
    return c, t * c


# --- Triton ----------------------------------------------------------------------------------------------------------

def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def triton_why_not(A: Tensor) -> List[str]:
    """Reasons the Triton kernel cannot take A (empty when it can)."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return ["triton is not installed"]
    reasons = []
    if not A.is_cuda and not _interpreting():
        reasons.append(f"tensor on {A.device}; the kernel runs on CUDA (or on CPU under TRITON_INTERPRET=1)")
    if A.shape[-1] > MAX_TRITON_N:
        reasons.append(f"n = {A.shape[-1]} > {MAX_TRITON_N}; one program holds the whole matrix")
    return reasons


@functools.lru_cache(maxsize=None)
def _kernel():
    import triton
    import triton.language as tl

    @triton.jit
    def jacobi_eigh_kernel(A, W, V, n, stride_ab, stride_ar, stride_ac, max_sweeps, tol2, BLOCK: tl.constexpr):
        pid = tl.program_id(0).to(tl.int64)
        i = tl.arange(0, BLOCK)
        rows = i[:, None]
        cols = i[None, :]
        inside = (rows < n) & (cols < n)
        a = tl.load(A + pid * stride_ab + rows * stride_ar + cols * stride_ac, mask=inside, other=0.0)
        a = 0.5 * (a + tl.trans(a))
        eye = rows == cols
        v = tl.where(eye, 1.0, 0.0).to(a.dtype)
        fro2 = tl.sum(tl.sum(a * a, axis=1), axis=0)
        off2 = tl.sum(tl.sum(tl.where(eye, 0.0, a * a), axis=1), axis=0)  # directly: no cancellation
        sweep = 0
        while (sweep < max_sweeps) & (off2 > tol2 * fro2):
            for r in range(BLOCK - 1):
                j = (2 * r - i + 2 * (BLOCK - 1)) % (BLOCK - 1)
                partner = tl.where(i == BLOCK - 1, r, tl.where(j == i, BLOCK - 1, j))
                at_partner = cols == partner[:, None]
                d = tl.sum(tl.where(eye, a, 0.0), axis=1)
                lower = i < partner
                # a[p, q] with p < q for both members of a pair (see the reference): bitwise the same angle
                a_ip = tl.sum(tl.where(at_partner, a, 0.0), axis=1)                  # a[i, partner(i)]
                a_pi = tl.sum(tl.where(rows == partner[None, :], a, 0.0), axis=0)    # a[partner(j), j]
                apq = tl.where(lower, a_ip, a_pi)
                dq = tl.sum(tl.where(at_partner, d[None, :], 0.0), axis=1)   # a[partner(i), partner(i)]
                app = tl.where(lower, d, dq)
                aqq = tl.where(lower, dq, d)
                nz = apq != 0.0
                tau = (aqq - app) / tl.where(nz, 2.0 * apq, 1.0)
                sgn = tl.where(tau >= 0.0, 1.0, -1.0)
                t = tl.where(nz, sgn / (tl.abs(tau) + tl.sqrt(1.0 + tau * tau)), 0.0)
                c = 1.0 / tl.sqrt(1.0 + t * t)
                s = tl.where(lower, -(t * c), t * c)
                prow = tl.broadcast_to(partner[:, None], (BLOCK, BLOCK))
                pcol = tl.broadcast_to(partner[None, :], (BLOCK, BLOCK))
                a = c[:, None] * a + s[:, None] * tl.gather(a, prow, 0)      # rows:    J^T A
                a = a * c[None, :] + tl.gather(a, pcol, 1) * s[None, :]      # columns: (J^T A) J
                v = v * c[None, :] + tl.gather(v, pcol, 1) * s[None, :]
            sweep += 1
            off2 = tl.sum(tl.sum(tl.where(eye, 0.0, a * a), axis=1), axis=0)
        tl.store(W + pid * BLOCK + i, tl.sum(tl.where(eye, a, 0.0), axis=1))
        tl.store(V + pid * BLOCK * BLOCK + rows * BLOCK + cols, v)

    return jacobi_eigh_kernel


def jacobi_eigh_triton(A: Tensor, *, max_sweeps: int = 20, tol: Optional[float] = None) -> Tuple[Tensor, Tensor]:
    """:func:`jacobi_eigh_reference`'s result from the Triton kernel: one program per matrix, n <= 128.

    Raises RuntimeError with the reasons when the kernel cannot take A (see :func:`triton_why_not`).
    """
    A = _check(A)
    reasons = triton_why_not(A)
    if reasons:
        raise RuntimeError("jacobi_eigh_triton: " + "; ".join(reasons))
    B, n, _ = A.shape
    N = _pad(n)
    W = torch.empty(B, N, dtype=A.dtype, device=A.device)
    V = torch.empty(B, N, N, dtype=A.dtype, device=A.device)
    if B:
        warps = 4 if N <= 32 else 8 if N <= 64 else 16
        _kernel()[(B,)](A, W, V, n, A.stride(0), A.stride(1), A.stride(2), int(max_sweeps),
                        _tol(n, A.dtype, tol) ** 2, BLOCK=N, num_warps=warps)
    return _sorted(W, V, n)


def batched_eigh(A: Tensor, *, backend: str = "auto") -> Tuple[Tensor, Tensor]:
    """Eigenvalues (B, n) ascending and eigenvectors (B, n, n) of a batch of small symmetric matrices.

    backend: "auto" (Triton on CUDA for n <= 128, else torch.linalg.eigh), "triton", "jacobi" (the batched
    PyTorch reference), "torch" (torch.linalg.eigh).
    """
    A = _check(A)
    if backend == "auto":
        backend = "triton" if A.is_cuda and not triton_why_not(A) else "torch"
    if backend == "triton":
        return jacobi_eigh_triton(A)
    if backend == "jacobi":
        return jacobi_eigh_reference(A)
    if backend == "torch":
        return torch.linalg.eigh(A)
    raise ValueError(f"backend: expected one of ['auto', 'triton', 'jacobi', 'torch'], got {backend!r}")
