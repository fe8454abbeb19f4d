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
``floor`` covers the rounding of the passes themselves (:func:`rounding_floor`).  The returned triplets'
r_i are the last check's when they come from its Gram eigendecomposition (below).
Where delta_i <= 0 or rho_i >= delta_i nothing is certified and the bound is pi / 2.

Adaptive (``power_iters=None``): after ``MIN_ITERS`` iterations, iterate until every direction's bound is below
``tol`` or its relative gap to a neighbour, min(s_{i-1} - s_i, s_i - s_{i+1}) / s_i, is below ``min_gap``
(such directions converge too slowly to chase: nearly repeated singular values; their bound is reported as it is),
at most ``max_iters`` iterations.  A check is skipped when the previous one left a chased direction with
rho_i / delta_i > ``SKIP_FACTOR`` tol (1e3 tol): it could not pass.  Ritz values and vectors come from the
eigendecomposition of the Gram matrix W^T W in float64 (W^T W = Z diag(s^2) Z^T: u_i = K Z e_i,
v_i = W Z e_i / s_i), at each check and for the returned triplets (the last check's, reused); a thin SVD of W
instead for float64 inputs (the Gram would cost them half their digits) and for latents whose s_{k+1} < 1e-4 s_1
(a rank-deficient W, where W Z / s is not orthonormal).
The blocks are kept as the rows of preallocated (B, M, n) buffers (K^T, W^T, Y^T), so every product with them
is a wide (few x m) @ (m x n) GEMM and nothing is concatenated.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch

from ..ops.small_linalg import orthonormalize, orthonormalize_with_gram, thin_svd
from ..ops.small_linalg._threads import batch_parallel

Tensor = torch.Tensor

#: float64 elements of K kept for the Gram-Schmidt (64 MB); beyond that, K is converted in slices per block
_K64_MAX_ELEMENTS = 1 << 23
MIN_ITERS = 2  # block-Krylov iterations before the first check (the former fixed default)
MAX_ITERS = 12
DEFAULT_TOL = 1e-3  # radians
DEFAULT_MIN_GAP = 1e-2  # relative gap below which a direction is not iterated for
#: a check is skipped when the previous one left a chased direction with rho / delta above SKIP_FACTOR * tol:
#: one more iteration does not improve a residual that much (measured on the LB workload: 30-170x per
#: iteration); a wrong skip costs one iteration, never a bound
SKIP_FACTOR = 1e3


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


def _orthogonalize_against(Yt: Tensor, Kt: Tensor, max_elements: int = 1 << 22,
                           K64: Optional[Tensor] = None) -> Tensor:
    """Rows: Yt (B, r, n) minus its components in the orthonormal rows Kt (B, m, n), twice (classical Gram-Schmidt
    needs the second pass to stay orthogonal in floating point), then orthonormalised; returns (B, r, n) in Yt's
    dtype (float64 with K64).  The projections run in float64: as the Krylov space converges the new block lies
    nearly inside the old ones, and the rounding of a float32 projection, divided by the small remainder, cost
    U's orthonormality up to 4e-5 (on the embedded generator's 64-d W; float32 rounding alone leaves ~1e-6).

    K64 (B, >= m, n) float64: the caller's float64 copy of Kt in its first m rows (kept block by block, so K is
    not converted again per block).  The CholeskyQR then starts from the block's Gram matrix formed beside the
    second pass's coefficients, less that pass's share (see :func:`orthonormalize_with_gram`).  Without K64, K is
    converted in column slices of at most ``max_elements`` float64 values (once, when that holds all of it), so an
    image-sized output space does not hold a float64 copy of K."""
    B, m, n = Kt.shape
    if K64 is not None:
        K, Y64 = K64[:, :m], Yt.double()  # Y64 contiguous: the in-place products below stay batched
        Y64.baddbmm_(Y64 @ K.transpose(1, 2), K, alpha=-1.0)
        C, gram = Y64 @ K.transpose(1, 2), Y64 @ Y64.transpose(1, 2)  # second-pass coefficients, Gram before it
        Y64.baddbmm_(C, K, alpha=-1.0)
        gram.baddbmm_(C, C.transpose(1, 2), alpha=-1.0)  # the Gram after the second pass (K K^T = I)
        return orthonormalize_with_gram(Y64.transpose(1, 2), gram, Yt.dtype).transpose(1, 2)
    step = max(1, max_elements // max(1, B * m))
    whole = Kt.double() if step >= n else None
    part = lambda a: whole if whole is not None else Kt[:, :, a:a + step].double()  # noqa: E731
    Y64 = Yt.double()
    for _ in range(2):
        C = sum(Y64[:, :, a:a + step] @ part(a).transpose(1, 2) for a in range(0, n, step))
        for a in range(0, n, step):
            Y64[:, :, a:a + step].baddbmm_(C, part(a), alpha=-1.0)
    return orthonormalize(Y64.transpose(1, 2)).transpose(1, 2).to(Yt.dtype)


def _residuals(Kt: Tensor, Wt: Tensor, Yt: Tensor, Zt: Tensor, s: Tensor, Vt: Optional[Tensor],
               r: Optional[Tensor] = None) -> Tensor:
    """sqrt(r_i^2 + t_i^2) (B, c), float64, for the triplets u_i = K Z e_i, s_i, v_i, in rows: Kt, Wt, Yt
    (B, m, n) the transposes of K, W, Y = J W, Zt (B, c, m) = Z^T in K's dtype, s (B, c) float64:
    r_i = ||Y Z e_i / s_i - s_i u_i||, t_i = ||W Z e_i - s_i v_i|| (J^T u_i = W Z e_i; Vt (B, c, n) = V^T);
    Vt None: v_i = W Z e_i / s_i, t_i = 0 by construction.  ``r``: the r_i (B, c) float64 when already known
    (a check computed them for the same Z)."""
    safe = torch.where(s > 0, s, torch.ones_like(s)).to(Kt.dtype)[:, :, None]
    sc = s.to(Kt.dtype)[:, :, None]
    if r is None:
        r = torch.baddbmm(Zt @ Yt / safe, Zt * sc, Kt, alpha=-1.0).norm(dim=2).double()
    if Vt is None:
        return r
    t = (Zt @ Wt - Vt * sc).norm(dim=2).double()
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
    fixed = power_iters is not None
    limit = power_iters if fixed else max_iters
    M = r * min(limit + 1, kmax // r)  # the widest the space can get (see the loop's exit)
    # the blocks of K, W = J^T K and Y = J W as ROWS of preallocated (B, M, n) buffers (Kt = K^T, ...): the
    # products with them are (few x m) @ (m x n), wide GEMMs; [:, :m] views of the first m columns of K, W, Y
    Kt, Wt, Yt = (torch.empty(B, M, n, dtype=dt, device=dev) for n in (op.d_out, op.d_in, op.d_out))
    # float64 rows of K for the Gram-Schmidt, kept block by block where they fit (else converted per block)
    K64 = None if B * M * op.d_out > _K64_MAX_ELEMENTS else Kt if dt == torch.float64 else \
        Kt.new_empty(Kt.shape, dtype=torch.float64)
    rows = lambda X: X.transpose(1, 2)  # noqa: E731  (B, n, r) <-> (B, r, n)
    omega = torch.randn(B, op.d_in, r, generator=generator, dtype=dt, device=gdev).to(dev)
    Kt[:, :r] = rows(orthonormalize(op.jvp(omega)))
    if K64 is not None and K64 is not Kt:
        K64[:, :r] = Kt[:, :r]
    Wt[:, :r] = rows(op.vjp(rows(Kt[:, :r])))
    columns = 2 * r
    c = min(k + 1, kmax)  # triplets whose residuals are needed: k and the neighbour below
    gram, ritz, last, W64, skip = None, None, None, None, False
    q, m = 0, r
    while True:
        Yt[:, m - r:m] = rows(op.jvp(rows(Wt[:, m - r:m])))
        columns += r
        if q >= limit or m + r > kmax:  # the Krylov space cannot grow past the full range
            break
        if not fixed and q >= MIN_ITERS and skip:  # the last check showed this one cannot pass
            skip = False
        elif not fixed and q >= MIN_ITERS:
            if W64 is None:  # float64 copies of W's rows for the Gram, from the first check on
                W64 = Wt if dt == torch.float64 else Wt.new_empty(Wt.shape, dtype=torch.float64)
            done_rows = 0 if gram is None else gram.shape[-1]
            if W64 is not Wt:
                W64[:, done_rows:m] = Wt[:, done_rows:m]
            gram = _gram(W64[:, :m], gram)
            ritz = _ritz(Kt[:, :m], Yt[:, :m], gram, c)
            done, bound, worst = _settled(ritz, k, tol, min_gap, dt)
            # stagnation (residuals at the precision's floor, above tol): no bound improved by 10 % since the last check
            if done or (last is not None and bool((bound > 0.9 * last).all())):
                break
            last = bound
            skip = worst > SKIP_FACTOR * tol
        Kt[:, m:m + r] = _orthogonalize_against(Yt[:, m - r:m], Kt[:, :m], K64=K64)
        if K64 is not None and K64 is not Kt:
            K64[:, m:m + r] = Kt[:, m:m + r]  # the stored (rounded) rows, which later blocks are projected against
        Wt[:, m:m + r] = rows(op.vjp(rows(Kt[:, m:m + r])))
        columns += r
        q, m = q + 1, m + r
    Kt, Wt, Yt = Kt[:, :m], Wt[:, :m], Yt[:, :m]
    if dt == torch.float64:  # the Gram's eigenvectors would cost float64 W half its digits: thin SVD
        ritz = None
    elif ritz is None or ritz[1].shape[2] != m:  # no check at this width
        ritz = _eig(_gram(Wt, gram), c)
    Vt, S, Zt, redone = _right_vectors(Wt, ritz, c)  # S (B, m) float64
    s = S[:, :c]
    reuse = ritz is not None and len(ritz) == 4 and not redone  # the last check's r_i are these triplets' r_i
    rho = _residuals(Kt, Wt, Yt, Zt, s, Vt, ritz[3] if reuse else None) + rounding_floor(s[:, :1], dt)
    if s.shape[1] < c:  # no Ritz value below the k-th (a space of k columns): nothing certifies the gap below
        s = torch.cat([s, torch.zeros_like(s[:, :1])], 1)
        rho = torch.cat([rho, torch.full_like(rho[:, :1], math.inf)], 1)
    elif c == k:  # k = min(d_in, d_out): nothing below
        s, rho = torch.cat([s, torch.zeros_like(s[:, :1])], 1), torch.cat([rho, torch.zeros_like(rho[:, :1])], 1)
    bound = angle_bounds(s, rho, k)
    Zk = Zt[:, :k]
    U = rows(Zk @ Kt).contiguous() if output_basis else output_signs(rows(Kt), rows(Zk))
    S = S.to(dt)
    residual = S[:, k] if k < S.shape[1] else torch.zeros_like(S[:, 0])
    return KrylovResult(U, S[:, :k], rows(Vt[:, :k]).contiguous(), residual, bound.to(dt), q, columns)


def _gram(Wt: Tensor, gram: Optional[Tensor]) -> Tensor:
    """W^T W (B, m, m) in float64 from the rows Wt (B, m, n) = W^T, extending ``gram`` (that of the first rows)."""
    W64 = Wt if Wt.dtype == torch.float64 else Wt.double()
    if gram is None:
        return W64 @ W64.transpose(1, 2)
    n, m = gram.shape[-1], Wt.shape[1]
    out = W64.new_empty(Wt.shape[0], m, m)
    cross = W64[:, n:] @ W64.transpose(1, 2)  # (B, m - n, m)
    out[:, :n, :n] = gram
    out[:, n:] = cross
    out[:, :n, n:] = cross[:, :, :n].transpose(1, 2)
    return out


def _eig(gram: Tensor, c: int):
    """The top min(c, m) eigenpairs of gram = W^T W (B, m, m) float64: Ritz values s (B, c), coefficients
    Zt (B, c, m) = Z^T (u_i = K Z e_i, v_i = W Z e_i / s_i) and all m eigenvalues theta (B, m), descending."""
    theta, Z = batch_parallel(torch.linalg.eigh, gram)
    theta, Z = theta.flip(-1), Z.flip(-1)
    c = min(c, theta.shape[1])
    return theta[:, :c].clamp_min(0).sqrt(), Z[:, :, :c].transpose(1, 2), theta


def _ritz(Kt: Tensor, Yt: Tensor, gram: Tensor, c: int):
    """:func:`_eig` of gram plus r_i = ||J v_i - s_i u_i|| (B, c) float64 from the rows Kt, Yt (B, m, n)."""
    s, Zt, theta = _eig(gram, c)
    return s, Zt, theta, _residuals(Kt, None, Yt, Zt.to(Kt.dtype), s, None)


#: v_i = W z_i / s_i is orthonormal to ~eps64 (s_1 / s_i)^2 (eigh is backward stable on W^T W); below this
#: s_c / s_1 the triplets come from the thin SVD of W instead, robust to a rank-deficient W
_GRAM_MIN_RATIO = 1e-4


def _right_vectors(Wt: Tensor, ritz, c: int):
    """Vt (B, c', n) = V^T, all Ritz values S (B, m) float64 and Zt (B, c', m) in W's dtype of the top
    c' = min(c, m) triplets of W = J^T K (rows Wt (B, m, n) = W^T): from the Gram eigendecomposition ``ritz``
    (V = W Z / s) where that is accurate (W narrower than float64, s_c >= 1e-4 s_1), else (float64 W: ``ritz``
    None; rank-deficient panels) from :func:`thin_svd` of W, for those latents; and whether any latent was."""
    B, m, n = Wt.shape
    c = min(c, m)
    if ritz is None:
        bad = torch.ones(B, dtype=torch.bool, device=Wt.device)
        Vt, S, Zt = Wt.new_empty(B, c, n), Wt.new_empty(B, m, dtype=torch.float64), Wt.new_empty(B, c, m)
    else:
        s, Z, theta = ritz[:3]
        S, Zt = theta.clamp_min(0).sqrt(), Z.to(Wt.dtype)
        Vt = (Zt @ Wt) / torch.where(s > 0, s, torch.ones_like(s)).to(Wt.dtype)[:, :, None]
        bad = (s[:, -1] < _GRAM_MIN_RATIO * s[:, 0]) | (s[:, 0] <= 0)
    if bool(bad.any()):
        idx = bad.nonzero().squeeze(1)
        P, Sb, Rh = thin_svd(Wt[idx].transpose(1, 2))  # W = J^T K = P S Rh  =>  K^T J = Rh^T S P^T
        Vt[idx], Zt[idx], S[idx] = P[:, :, :c].transpose(1, 2), Rh[:, :c], Sb.double()
        return Vt, S, Zt, True
    return Vt, S, Zt, False


def _settled(ritz, k, tol, min_gap, dtype):
    """Whether every latent's k directions are certified below ``tol`` or too close to a neighbour to chase, the
    bounds (B, k), and the largest rho_i / delta_i (inf: gap not certified) of the directions still chased, from
    the check's Ritz values and residuals (:func:`_ritz`)."""
    s, _, _, rho = ritz
    c = s.shape[1]
    floor = rounding_floor(s[:, :1], dtype).expand_as(s)
    rho = rho + floor
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
    # rho_i / delta_i of the directions still chased (inf where the gap is not certified): how far from tol
    delta = torch.minimum(torch.minimum(above, si - s[:, 1:k + 1] - rho[:, 1:k + 1] / math.sqrt(2.0)), si)
    ratio = torch.where(delta > 0, rho[:, :k] / delta.clamp_min(torch.finfo(si.dtype).tiny), inf)
    worst = float(torch.where(hopeless, torch.zeros_like(ratio), ratio).max())
    return bool(((bound <= tol) | hopeless).all()), bound, worst
