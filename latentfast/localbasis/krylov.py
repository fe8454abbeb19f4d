"""Randomized block Krylov SVD of a Jacobian operator, with a posteriori residuals and per-direction angle bounds.

Space (Musco & Musco 2015): span{Y, (J J^T) Y, ..., (J J^T)^q Y}, Y = J Omega (r = k + oversample Gaussian
probes), block by block, each block orthogonalised against the earlier ones (CholeskyQR2 from ops/small_linalg).
Each iteration costs one VJP and one JVP of r columns — the price of a power iteration — but keeps every block.
With K = [K_0..K_q] and W = J^T K (the VJPs, kept), W = P S R^T gives the Ritz triplets U = K R, S, V = P.

A posteriori residuals, from passes actually run: Y_j = J W_j is the JVP that builds block j + 1, so with the
JVP of the last W block as well (r columns: the next block's input, reused if iterating goes on),
    J v_i = J W R e_i / s_i = [Y_0..Y_q] R e_i / s_i,       r_i = ||J v_i - s_i u_i||,
    J^T u_i = W R e_i,                                     t_i = ||J^T u_i - s_i v_i||.
Angle bound (Wedin's sin-theta theorem, from the Davis-Kahan bound on the augmented matrix [[0, J], [J^T, 0]]):
    sin angle(u_i, exact u_i), sin angle(v_i, exact v_i) <= rho_i / delta_i,   rho_i = sqrt(r_i^2 + t_i^2) + floor,
    delta_i = min(s_{i-1} - s_i,  s_i - s_{i+1} - rho_{i+1} / sqrt 2,  s_i)
The gap above is certified: Ritz values interlace, sigma_{i-1} >= s_{i-1}.  The gap below uses that an exact
singular value lies within rho_{i+1} / sqrt 2 of s_{i+1} and assumes it is sigma_{i+1}, i.e. that the Krylov
space has not missed a singular value between s_{i+1} and s_i — true with overwhelming probability for a Gaussian
start (no method can rule it out from a few products with J); the tests check the bound against exact SVDs.
``floor`` covers the rounding of the passes themselves (:func:`rounding_floor`).
Where delta_i <= 0 or rho_i >= delta_i nothing is certified and the bound is pi / 2.

Adaptive (``power_iters=None``): after ``MIN_ITERS`` iterations, iterate until every direction's bound is below
``tol`` or its relative gap to a neighbour, min(s_{i-1} - s_i, s_i - s_{i+1}) / s_i, is below ``min_gap``
(such directions converge too slowly to chase: nearly repeated singular values; their bound is reported as it is),
at most ``max_iters`` iterations.  Ritz values are read from the Gram matrix W^T W in float64 at each check; the
returned triplets come from a thin SVD of W (robust to a rank-deficient W).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch

from ..ops.small_linalg import orthonormalize, thin_svd
from ..ops.small_linalg._threads import single_threaded

Tensor = torch.Tensor

MIN_ITERS = 2  # block-Krylov iterations before the first check (the former fixed default)
MAX_ITERS = 12
DEFAULT_TOL = 1e-3  # radians
DEFAULT_MIN_GAP = 1e-2  # relative gap below which a direction is not iterated for


@dataclass
class KrylovResult:
    U: Tensor  # (B, d_out, k)
    S: Tensor  # (B, k)
    V: Tensor  # (B, d_in, k)
    residual: Tensor  # (B,) s_{k+1}
    angle_bound: Tensor  # (B, k) radians
    iterations: int  # block-Krylov iterations run
    columns: int  # tangent columns per latent (JVP + VJP), for cost accounting


def rounding_floor(s1: Tensor, dtype: torch.dtype) -> Tensor:
    """Residual allowance for the rounding of tangent passes in ``dtype``: 16 eps s_1.  Measured on 8-layer,
    512-wide mappings in float32: ||J_float32 - J_float64||_2 = 5 eps s_1 (both the fused MLP and torch.func
    paths), and float32 Krylov residuals stagnate near 30 eps s_1 — a level they then report themselves."""
    return 16.0 * torch.finfo(dtype).eps * s1


def angle_bounds(s: Tensor, rho: Tensor, k: int) -> Tensor:
    """Per-direction angle bounds (B, k) from Ritz values s (B, k + 1) (descending; s_{k+1} may be 0) and residual
    norms rho (B, k + 1) (rounding floor included), as in the module docstring."""
    si = s[:, :k]
    inf = torch.full_like(si[:, :1], math.inf)
    above = torch.cat([inf, s[:, :k - 1] - si[:, 1:]], 1) if k > 1 else inf
    below = si - s[:, 1:k + 1] - rho[:, 1:k + 1] / math.sqrt(2.0)
    delta = torch.minimum(torch.minimum(above, below), si)
    ratio = rho[:, :k] / delta
    ok = (delta > 0) & (ratio < 1)
    return torch.where(ok, torch.asin(ratio.clamp(0, 1)), torch.full_like(ratio, math.pi / 2))


def _orthogonalize_against(Y: Tensor, blocks) -> Tensor:
    """Y minus its components in the earlier orthonormal blocks, twice (classical Gram-Schmidt needs the
    second pass to stay orthogonal in floating point), then orthonormalised."""
    for _ in range(2):
        for K in blocks:
            Y = Y - K @ (K.transpose(1, 2) @ Y)
    return orthonormalize(Y)


def _residuals(K: Tensor, W: Tensor, Y: Tensor, Rk: Tensor, s: Tensor, P: Optional[Tensor]) -> Tensor:
    """sqrt(r_i^2 + t_i^2) (B, c) for the Ritz triplets with coefficients Rk (B, m, c) in K (u = K Rk e_i),
    values s (B, c) and v = P e_i (P None: v = W Rk e_i / s_i, so t_i = 0 by construction)."""
    safe = torch.where(s > 0, s, torch.ones_like(s))
    Rk = Rk.to(K.dtype)
    sc = s.to(K.dtype)[:, None, :]
    JV = (Y @ Rk) / safe.to(K.dtype)[:, None, :]
    U = K @ Rk
    r = (JV - U * sc).norm(dim=1).double()
    if P is None:
        return r
    t = (W @ Rk - P * sc).norm(dim=1).double()
    return (r.square() + t.square()).sqrt()


def output_signs(A: Tensor, M: Tensor, rows: int = 4096) -> Tensor:
    """(B, 1, k) sign of the largest-magnitude entry of each column of A @ M (A (B, n, m), M (B, m, k)), the
    first on ties, without forming the (B, n, k) product: row blocks of ``rows``."""
    best = sign = None
    for s in range(0, A.shape[1], rows):
        blk = A[:, s:s + rows] @ M
        idx = blk.abs().argmax(dim=1, keepdim=True)
        val = blk.gather(1, idx)
        if best is None:
            best, sign = val.abs(), torch.sign(val)
        else:
            take = val.abs() > best
            best, sign = torch.where(take, val.abs(), best), torch.where(take, torch.sign(val), sign)
    return torch.where(sign == 0, torch.ones_like(sign), sign)


def randomized_svd(op, k: int, oversample: int, power_iters: Optional[int], tol: float, max_iters: int,
                   min_gap: float, generator: Optional[torch.Generator], output_basis: bool = True) -> KrylovResult:
    """Top-k singular triplets of the operator ``op`` (jvp/vjp/points/d_in/d_out/dtype), see the module docstring.
    ``output_basis=False``: ``U`` holds only the (B, 1, k) signs of U's columns (see :func:`output_signs`)."""
    B = op.points.shape[0]
    kmax = min(op.d_in, op.d_out)
    r = min(k + oversample, kmax)
    dt, dev = op.dtype, op.points.device
    gdev = generator.device if generator is not None else dev
    omega = torch.randn(B, op.d_in, r, generator=generator, dtype=dt, device=gdev).to(dev)
    blocks = [orthonormalize(op.jvp(omega))]  # K_0
    Ws = [op.vjp(blocks[0])]  # J^T K_j
    Ys = []  # J W_j
    columns = 2 * r
    c = min(k + 1, kmax)  # triplets whose residuals are needed: k and the neighbour below
    fixed = power_iters is not None
    limit = power_iters if fixed else max_iters
    gram = last = None
    q = 0
    while True:
        Ys.append(op.jvp(Ws[-1]))
        columns += Ws[-1].shape[-1]
        width = sum(K.shape[-1] for K in blocks)
        if q >= limit or width + r > kmax:  # the Krylov space cannot grow past the full range
            break
        if not fixed and q >= MIN_ITERS:
            gram = _gram(Ws, gram)
            done, bound = _settled(blocks, Ws, Ys, k, c, tol, min_gap, gram)
            # stagnation (residuals at the precision's floor, above tol): no bound improved by 10 % since the last check
            if done or (last is not None and bool((bound > 0.9 * last).all())):
                break
            last = bound
        blocks.append(_orthogonalize_against(Ys[-1], blocks))
        Ws.append(op.vjp(blocks[-1]))
        columns += blocks[-1].shape[-1]
        q += 1
    K, W, Y = torch.cat(blocks, 2), torch.cat(Ws, 2), torch.cat(Ys, 2)
    P, S, Rh = thin_svd(W)  # W = J^T K = P S Rh  =>  K^T J = Rh^T S P^T
    m = S.shape[1]
    Rk = Rh.transpose(1, 2)[:, :, :c]
    rho = _residuals(K, W, Y, Rk, S[:, :c], P[:, :, :c])
    s = S[:, :c].double()
    rho = rho + rounding_floor(s[:, :1], dt)
    if c == k:  # k = min(d_in, d_out): nothing below
        s, rho = torch.cat([s, torch.zeros_like(s[:, :1])], 1), torch.cat([rho, torch.zeros_like(rho[:, :1])], 1)
    bound = angle_bounds(s, rho, k)
    U = K @ Rk[:, :, :k] if output_basis else output_signs(K, Rk[:, :, :k])
    residual = S[:, k] if k < m else torch.zeros_like(S[:, 0])
    return KrylovResult(U, S[:, :k], P[:, :, :k], residual, bound.to(dt), q, columns)


def _gram(Ws, gram: Optional[Tensor]) -> Tensor:
    """W^T W in float64, extended by the blocks added since ``gram`` was formed."""
    W = torch.cat(Ws, 2).double()
    if gram is None:
        return W.transpose(1, 2) @ W
    n = gram.shape[-1]
    new = W[:, :, n:]
    cross = W.transpose(1, 2) @ new  # (B, m, m - n)
    top = torch.cat([gram, cross[:, :n]], 2)
    return torch.cat([top, cross.transpose(1, 2)], 1)


def _settled(blocks, Ws, Ys, k, c, tol, min_gap, gram) -> bool:
    """Whether every latent's k directions are certified below ``tol`` or too close to a neighbour to chase."""
    with single_threaded(gram):
        theta, Z = torch.linalg.eigh(gram)
    s = theta.flip(-1)[:, :c].clamp_min(0).sqrt()
    Zc = Z.flip(-1)[:, :, :c]
    K, W, Y = torch.cat(blocks, 2), torch.cat(Ws, 2), torch.cat(Ys, 2)
    floor = rounding_floor(s[:, :1], K.dtype).expand_as(s)
    rho = _residuals(K, W, Y, Zc, s, None) + floor
    if c == k:
        pad = lambda t: torch.cat([t, torch.zeros_like(t[:, :1])], 1)  # noqa: E731
        s, rho, floor = pad(s), pad(rho), pad(floor)
    bound = angle_bounds(s, rho, k)
    si = s[:, :k]
    inf = torch.full_like(si[:, :1], math.inf)
    above = torch.cat([inf, s[:, :k - 1] - si[:, 1:]], 1) if k > 1 else inf
    rel_gap = torch.minimum(above, si - s[:, 1:k + 1]) / si.clamp_min(torch.finfo(si.dtype).tiny)
    # out of reach: too close to a neighbour to chase, or beyond tol even with residuals at the rounding floor
    hopeless = (rel_gap < min_gap) | (angle_bounds(s, floor, k) > tol)
    return bool(((bound <= tol) | hopeless).all()), bound
