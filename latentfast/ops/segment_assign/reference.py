"""Nearest segment of a polyline, in pure PyTorch: the CPU fallback and the test oracle.

Math.  Segment j joins a = c_j and b = c_{j+1}; d = b - a, L = |d|^2.  For a point x the nearest point of the
segment is a + t d with t = clamp(<x - a, d> / L, 0, 1) (t = 0 when L = 0) and the squared distance is

    |x - a|^2 - 2 t <x - a, d> + t^2 L.

All inner products with x come from ONE GEMM  G = X C^T:  <x, a> = G_j, <x - a, d> = G_{j+1} - G_j - <a, d>.

Exactness.  That expanded form cancels when |x| >> distance.  Two things keep the answer exact:
  1. for the cheap formula both X and C are shifted by the mean vertex first (distances are translation
     invariant), which removes the "far from the origin" part of the cancellation for free;
  2. the K best segments by the cheap formula are re-scored directly in float64 from the raw, unshifted
     inputs (x - a, clamp, |residual|^2: the brute force's own formula), and a point is *certified* only if
     every other segment's cheap distance exceeds the winner's exact distance by more than a rigorous bound on
     the cheap formula's rounding error (relative, plus an underflow term).  The few points that are not
     certified (genuine near-ties among more than K segments) are solved by brute force in float64.
So the result equals a float64 brute force (same segment, or a tie at float64 precision), for any input whose
largest magnitude is inside the window of ``scaling.py``; the public functions rescale the others exactly.

The same machinery with zero-length "segments" gives the nearest point of a codebook (``nearest_point``), which
serves SFVQ training (nearest dithered point).
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch

Tensor = torch.Tensor

#: candidates re-scored exactly per point.  Four covers the common exact tie of two segments that share a
#: vertex plus margin; more rarely helps (measured on the FFHQ curves: see tests).
NUM_CANDIDATES = 4


def default_chunk_size(num_vertices: int) -> int:
    """Rows per chunk so that the (rows x M) working set stays near 16M elements."""
    return int(min(65536, max(64, (1 << 24) // max(num_vertices, 1))))


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """GEMM precision: float64 stays float64, everything else runs in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


#: relative error of one TF32 GEMM input (10 explicit mantissa bits; hardware may truncate, so eps, not eps / 2)
TF32_EPS = 2.0 ** -10


def gemm_error_bound(dim: int, dtype: torch.dtype, input_eps: float = 0.0) -> float:
    """Factor f such that |cheap distance - exact distance| <= f * (|x~| + max|c~|)^2.

    Each GEMM entry has error <= gamma_D |x||c| with gamma_D = D u / (1 - D u) (any summation order); the cheap
    distance combines two such entries in <x - a, d> (weighted by up to 2t <= 2) and one in |x - a|^2 (weight 2),
    plus O(u) rounding of the epilogue.  6 gamma_D + 16 u bounds the total; doubled for safety against
    compilers contracting the epilogue differently.

    ``input_eps``: relative error of the GEMM's inputs when the hardware rounds them first (TF32: TF32_EPS).
    Rounding both inputs moves each entry by at most (2 e + e^2) |x||c|, with the same total weight 6.
    """
    u = torch.finfo(dtype).eps / 2
    gamma = dim * u / max(1.0 - dim * u, 1e-3)
    e = float(input_eps)
    return 2.0 * (6.0 * (gamma + 2.0 * e + e * e) + 16.0 * u)


def gemm_underflow_bound(dim: int, dtype: torch.dtype) -> float:
    """Absolute term added to the relative bound: what underflow can cost the cheap formula.

    Below the normal range rounding errors are absolute, not relative: a product that underflows (or an input
    or output flushed to zero by FTZ/DAZ hardware) is off by < tiny = the smallest normal number (times |c| <= E
    for a flushed input, which the relative term covers when E >= 1).  The cheap distance sums about 12 D such
    products (xx, G_j, G_{j+1}, <a, d>, |d|^2, |c|^2) plus the epilogue; a clamped t on a segment whose
    |d|^2 < tiny is wrong by at most |d|^2 < tiny.  Doubled for safety, like the relative factor.
    """
    tiny = torch.finfo(dtype).tiny
    return 2.0 * (12.0 * dim + 16.0) * tiny


def gemm_input_eps(x: Tensor, dtype: torch.dtype) -> float:
    """Input rounding of a float32 GEMM on x's device: TF32 on CUDA when torch allows it, else none."""
    if x.is_cuda and dtype == torch.float32 and torch.backends.cuda.matmul.allow_tf32:
        return TF32_EPS
    return 0.0


def _prepare(vertices: Tensor, segments: bool):
    """Per-call constants of the vertex set, in the compute dtype and shifted by the mean vertex."""
    cdt = compute_dtype(vertices.dtype)
    c64 = vertices.to(torch.float64)  # the exact re-scoring uses these raw values, uncentred (see nearest)
    mean = c64.mean(0)
    c = (c64 - mean).to(cdt)
    cc = (c * c).sum(1)
    if segments:
        d = c[1:] - c[:-1]
        L = (d * d).sum(1)
        ad = (c[:-1] * d).sum(1)  # <a, d>
    else:
        L = ad = None
    cmax = float(cc.max().sqrt()) if cc.numel() else 0.0
    return mean, c64, c, cc, L, ad, cmax


def cheap_distances(xs: Tensor, c: Tensor, cc: Tensor, L: Optional[Tensor], ad: Optional[Tensor]) -> Tensor:
    """(n, S) squared distances by the expanded formula from one GEMM (S = M - 1 segments, or M points)."""
    G = xs @ c.T
    xx = (xs * xs).sum(1, keepdim=True)
    if L is None:
        return (xx - 2.0 * G + cc).clamp_min_(0.0)
    p = G[:, 1:] - G[:, :-1] - ad  # <x - a, d>
    t = torch.where(L > 0, p / torch.where(L > 0, L, torch.ones_like(L)), torch.zeros_like(p)).clamp_(0.0, 1.0)
    return (xx - 2.0 * G[:, :-1] + cc[:-1] - 2.0 * t * p + t * t * L).clamp_min_(0.0)


def exact_scores(x64: Tensor, c64: Tensor, idx: Tensor, segments: bool) -> Tuple[Tensor, Tensor]:
    """Direct float64 distance (and t) from each point x64[i] to segments/points idx[i, :] (n, K)."""
    a = c64[idx]  # (n, K, D)
    diff = x64.unsqueeze(1) - a
    if not segments:
        return (diff * diff).sum(-1), torch.zeros(idx.shape, dtype=torch.float64, device=x64.device)
    b = c64[idx + 1]
    d = b - a
    L = (d * d).sum(-1)
    p = (diff * d).sum(-1)
    t = torch.where(L > 0, p / torch.where(L > 0, L, torch.ones_like(L)), torch.zeros_like(p)).clamp_(0.0, 1.0)
    # At t = 1 the nearest point is b itself: use x - b, the very residual segment j+1 computes at t = 0, so the
    # common exact tie of two segments meeting at their nearest vertex is an exact float64 tie (lowest index wins)
    # instead of a coin flip between two roundings.
    r = torch.where((t == 1.0).unsqueeze(-1), x64.unsqueeze(1) - b, diff - t.unsqueeze(-1) * d)
    return (r * r).sum(-1), t


def pick_lowest(dist: Tensor, t: Tensor, idx: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """Per row, the candidate with the smallest distance; ties go to the lowest segment index."""
    order = idx.argsort(dim=1)
    idx, dist, t = idx.gather(1, order), dist.gather(1, order), t.gather(1, order)
    best = dist.argmin(dim=1, keepdim=True)  # first minimum -> lowest index
    return idx.gather(1, best).squeeze(1), t.gather(1, best).squeeze(1), dist.gather(1, best).squeeze(1)


def brute_force(points: Tensor, vertices: Tensor, *, segments: bool = True, block: int = 64) -> Tuple[Tensor, Tensor, Tensor]:
    """Float64 brute force over every segment (or point), by the direct formula: the oracle.

    Returns (index int64, t float64, distance_sq float64).  Memory: n x block x D per step.
    """
    x64 = points.to(torch.float64)
    c64 = vertices.to(torch.float64)
    if segments and c64.shape[0] == 1:
        c64 = c64.expand(2, -1)
    S = c64.shape[0] - 1 if segments else c64.shape[0]
    n = x64.shape[0]
    best_d = torch.full((n,), float("inf"), dtype=torch.float64, device=x64.device)
    best_t = torch.zeros(n, dtype=torch.float64, device=x64.device)
    best_i = torch.zeros(n, dtype=torch.int64, device=x64.device)
    for s0 in range(0, S, block):
        idx = torch.arange(s0, min(S, s0 + block), device=x64.device).expand(n, -1)
        d, t = exact_scores(x64, c64, idx, segments)
        i, tb, db = pick_lowest(d, t, idx)
        better = db < best_d  # strict: an equal later block never displaces a lower index
        best_d = torch.where(better, db, best_d)
        best_t = torch.where(better, tb, best_t)
        best_i = torch.where(better, i, best_i)
    return best_i, best_t, best_d


def nearest(points: Tensor, vertices: Tensor, *, segments: bool = True, chunk_size: Optional[int] = None,
            num_candidates: int = NUM_CANDIDATES) -> Tuple[Tensor, Tensor, Tensor]:
    """Exact nearest segment (``segments=True``) or nearest vertex, for validated (N, D) and (M, D) inputs.

    Returns (index int64 (N,), t (N,), distance_sq (N,)) with t and distance in the input dtype.
    """
    out_dtype = points.dtype
    if segments and vertices.shape[0] == 1:  # a single point: one zero-length segment
        vertices = vertices.expand(2, -1)
    n_all, dim = points.shape
    mean, c64, c, cc, L, ad, cmax = _prepare(vertices, segments)
    S = c.shape[0] - 1 if segments else c.shape[0]
    K = min(num_candidates, S)
    bound_factor = gemm_error_bound(dim, c.dtype, gemm_input_eps(points, c.dtype))  # TF32 on CUDA widens it
    bound_abs = gemm_underflow_bound(dim, c.dtype)
    chunk = chunk_size or default_chunk_size(c.shape[0])

    index = torch.empty(n_all, dtype=torch.int64, device=points.device)
    t_out = torch.empty(n_all, dtype=out_dtype, device=points.device)
    d_out = torch.empty(n_all, dtype=out_dtype, device=points.device)
    for s in range(0, n_all, chunk):
        # The cheap formula works on centred values; the exact re-scoring on the raw ones, like the brute force:
        # centring rounds (x - mean in float64 loses a coordinate 2^-60 next to a mean of 1), raw x - a of two
        # float32 numbers is exact, and of float64 numbers rounds once.
        x64 = points[s:s + chunk].to(torch.float64)
        xc = x64 - mean
        xs = xc.to(c.dtype)
        approx = cheap_distances(xs, c, cc, L, ad)
        cand_d, cand_i = approx.topk(K, dim=1, largest=False, sorted=True)
        ex_d, ex_t = exact_scores(x64, c64, cand_i, segments)
        i, t, d = pick_lowest(ex_d, ex_t, cand_i)
        if K < S:
            # Every non-candidate's cheap distance is >= the K-th candidate's; its exact distance is then
            # >= cand_d[:, -1] - bound (relative rounding plus underflow).  Certified when that cannot beat the
            # winner.
            xnorm = xc.norm(dim=1)
            bound = bound_factor * (xnorm + cmax) ** 2 + bound_abs
            # written as "not certified" so that a NaN (an overflowed cheap distance) is never certified
            unsure = ~((cand_d[:, -1].to(torch.float64) - bound) > d)
            if bool(unsure.any()):
                # Near-ties beyond K candidates: redo those rows with a float64 GEMM (whose bound is ~1e9x
                # tighter), and only at float64 itself fall back to the direct brute force.
                rows = unsure.nonzero().squeeze(1)
                if c.dtype != torch.float64:
                    bi, bt, bd = nearest(x64[rows], c64, segments=segments, num_candidates=num_candidates)
                else:
                    bi, bt, bd = brute_force(x64[rows], c64, segments=segments)
                i[rows], t[rows], d[rows] = bi, bt.to(t.dtype), bd.to(d.dtype)
        index[s:s + chunk] = i
        t_out[s:s + chunk] = t.to(out_dtype)
        d_out[s:s + chunk] = d.to(out_dtype)
    return index, t_out, d_out
