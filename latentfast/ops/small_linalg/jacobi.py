"""Batched one-sided Jacobi SVD of small square-ish panels (B, n, m), n >= m, without a per-matrix loop.

Why: on CUDA, torch.linalg.svd / eigh are batched (Jacobi in cuSOLVER) only up to 32 x 32; larger small matrices
— the (q+1) r x (q+1) r factors of the block-Krylov local basis, e.g. 63 x 63 for k = 10 — go matrix by matrix,
which for 10,000 latents costs seconds.  One-sided Jacobi vectorises over the batch AND over m/2 disjoint column
pairs at a time (round-robin ordering): each round is a handful of elementwise kernels on (B, n, m/2) slices,
(m - 1) rounds per sweep, a few sweeps.  The cost depends on m, not on B, until memory bandwidth is the limit.
It is also accurate: singular values to high relative accuracy (no Gram matrix is formed).

Each rotation makes columns p, q of U orthogonal:  alpha = |u_p|^2, beta = |u_q|^2, gamma = <u_p, u_q>,
zeta = (beta - alpha) / (2 gamma), t = sign(zeta) / (|zeta| + sqrt(1 + zeta^2)), c = 1/sqrt(1 + t^2), s = c t;
the same rotation accumulates into V.  At convergence A V = U, so sigma_i = |u_i| and A = (U / sigma) diag(sigma) V^T.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Tuple

import torch

Tensor = torch.Tensor


@lru_cache(maxsize=32)
def _round_robin(m: int):
    """m - 1 rounds of m/2 disjoint pairs covering every pair once (m even): the circle method."""
    players = list(range(m))
    rounds = []
    for _ in range(m - 1):
        P = [players[i] for i in range(m // 2)]
        Q = [players[m - 1 - i] for i in range(m // 2)]
        rounds.append((P, Q))
        players = [players[0]] + [players[-1]] + players[1:-1]
    return rounds


def jacobi_svd(A: Tensor, *, max_sweeps: int = 30, tol: float | None = None) -> Tuple[Tensor, Tensor, Tensor]:
    """SVD of a batch A (B, n, m), n >= m: returns U (B, n, m), S (B, m) descending, Vh (B, m, m).

    Stops when every pair's |cos| = |gamma| / sqrt(alpha beta) is below ``tol`` (default: 8 * n * eps of the
    dtype) or after ``max_sweeps`` sweeps.  Columns with sigma = 0 get a zero U column.
    """
    if A.dim() != 3 or A.shape[1] < A.shape[2]:
        raise ValueError(f"A: expected a batch of panels (B, n, m) with n >= m, got shape {tuple(A.shape)}")
    B, n, m0 = A.shape
    dtype = A.dtype
    tol = tol if tol is not None else 8 * n * torch.finfo(dtype).eps
    m = m0 + (m0 % 2)  # pad to an even number of columns with a zero column (it stays zero)
    U = torch.zeros(B, n, m, dtype=dtype, device=A.device)
    U[:, :, :m0] = A
    V = torch.eye(m, dtype=dtype, device=A.device).expand(B, m, m).contiguous()
    rounds = [(torch.tensor(P, device=A.device), torch.tensor(Q, device=A.device)) for P, Q in _round_robin(m)]
    tiny = torch.finfo(dtype).tiny
    for _ in range(max_sweeps):
        worst = torch.zeros((), dtype=dtype, device=A.device)
        for P, Q in rounds:
            up, uq = U[:, :, P], U[:, :, Q]
            alpha = (up * up).sum(1)
            beta = (uq * uq).sum(1)
            gamma = (up * uq).sum(1)
            denom = (alpha * beta).sqrt()
            off = gamma.abs() / denom.clamp_min(tiny)
            worst = torch.maximum(worst, torch.where(denom > tiny, off, torch.zeros_like(off)).max())
            rotate = (off > tol) & (denom > tiny)
            zeta = (beta - alpha) / (2 * torch.where(rotate, gamma, torch.ones_like(gamma)))
            t = torch.sign(zeta) / (zeta.abs() + (1 + zeta * zeta).sqrt())
            t = torch.where(zeta == 0, torch.ones_like(t), t)
            c = torch.where(rotate, (1 + t * t).rsqrt(), torch.ones_like(t))
            s = torch.where(rotate, c * t, torch.zeros_like(t))
            c, s = c[:, None, :], s[:, None, :]
            U[:, :, P], U[:, :, Q] = c * up - s * uq, s * up + c * uq
            vp, vq = V[:, :, P], V[:, :, Q]
            V[:, :, P], V[:, :, Q] = c * vp - s * vq, s * vp + c * vq
        if float(worst) <= tol:  # one sync per sweep
            break
    S = U.norm(dim=1)
    order = S.argsort(dim=1, descending=True)[:, :m0]
    S = S.gather(1, order)
    U = U.gather(2, order[:, None, :].expand(B, n, m0))
    V = V.gather(2, order[:, None, :].expand(B, m, m0))[:, :m0, :]
    U = U / torch.where(S > 0, S, torch.ones_like(S))[:, None, :]
    return U, S, V.transpose(1, 2)
