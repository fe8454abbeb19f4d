"""Triton kernels of the segment_assign ``triton`` backend (see triton.py there for the algorithm).

Imported lazily by triton.py so that ``import latentfast`` neither needs nor imports triton.
"""
import triton
import triton.language as tl


@triton.jit
def _insert(b1, b2, b3, b4, i1, i2, i3, i4, v, j):
    # insert (v, j) into the ascending b1 <= b2 <= b3 <= b4; strict '<' keeps earlier (lower) indices first
    c1 = v < b1
    c2 = v < b2
    c3 = v < b3
    c4 = v < b4
    nb4 = tl.where(c3, b3, tl.where(c4, v, b4))
    ni4 = tl.where(c3, i3, tl.where(c4, j, i4))
    nb3 = tl.where(c2, b2, tl.where(c3, v, b3))
    ni3 = tl.where(c2, i2, tl.where(c3, j, i3))
    nb2 = tl.where(c1, b1, tl.where(c2, v, b2))
    ni2 = tl.where(c1, i1, tl.where(c2, j, i2))
    nb1 = tl.where(c1, v, b1)
    ni1 = tl.where(c1, j, i1)
    return nb1, nb2, nb3, nb4, ni1, ni2, ni3, ni4

@triton.jit
def _centred_tile(P, MEAN, roff, rmask, kk, km, stride_pd):
    # (rows, BLOCK_K) tile of points minus the mean vertex, zero outside D (float32)
    x = tl.load(P + roff[:, None] + kk[None, :].to(tl.int64) * stride_pd,
                mask=rmask[:, None] & km[None, :], other=0.0)
    mu = tl.load(MEAN + kk, mask=km, other=0.0)
    return tl.where(km[None, :], x - mu[None, :], 0.0)


@triton.jit
def _topk_kernel(P, MEAN, C, CC, AD, LL, INVL, OUT_D, OUT_I, N, M, S, D,
                 stride_pn, stride_pd, stride_cm,
                 SEGMENTS: tl.constexpr, PRECISION: tl.constexpr,
                 BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr):
    pid = tl.program_id(0)
    rows = pid * BLOCK_N + tl.arange(0, BLOCK_N)
    rmask = rows < N
    roff = rows.to(tl.int64) * stride_pn  # 64-bit: N * D may exceed 2^31
    ks = tl.arange(0, BLOCK_K)
    # |x~|^2 of the centred, float32-rounded points
    xx = tl.zeros([BLOCK_N], dtype=tl.float32)
    for k0 in range(0, D, BLOCK_K):
        kk = k0 + ks
        km = kk < D
        xs = _centred_tile(P, MEAN, roff, rmask, kk, km, stride_pd)
        xx += tl.sum(xs * xs, axis=1)

    inf = float("inf")
    b1 = tl.full([BLOCK_N], inf, tl.float32)
    b2 = tl.full([BLOCK_N], inf, tl.float32)
    b3 = tl.full([BLOCK_N], inf, tl.float32)
    b4 = tl.full([BLOCK_N], inf, tl.float32)
    i1 = tl.zeros([BLOCK_N], dtype=tl.int32)
    i2 = tl.zeros([BLOCK_N], dtype=tl.int32)
    i3 = tl.zeros([BLOCK_N], dtype=tl.int32)
    i4 = tl.zeros([BLOCK_N], dtype=tl.int32)
    cl = tl.arange(0, BLOCK_M)
    # tiles advance by BLOCK_M - 1 vertices for segments (overlap of one), by BLOCK_M for points
    for j0 in range(0, S, BLOCK_M - SEGMENTS):
        cols = j0 + cl
        cm = cols < M
        acc = tl.zeros([BLOCK_N, BLOCK_M], dtype=tl.float32)
        for k0 in range(0, D, BLOCK_K):
            kk = k0 + ks
            km = kk < D
            xs = _centred_tile(P, MEAN, roff, rmask, kk, km, stride_pd)
            c = tl.load(C + cols[None, :].to(tl.int64) * stride_cm + kk[:, None],
                        mask=cm[None, :] & km[:, None], other=0.0)  # (BLOCK_K, BLOCK_M)
            acc = tl.dot(xs, c, acc, input_precision=PRECISION)
        cc = tl.load(CC + cols, mask=cm, other=0.0)
        if SEGMENTS:
            sm = cols < S
            # the overlap: column l + 1 of this tile is <x, c_{j+1}> for segment j = j0 + l
            nxt = tl.minimum(cl + 1, BLOCK_M - 1)
            gn = tl.gather(acc, tl.broadcast_to(nxt[None, :], (BLOCK_N, BLOCK_M)), 1)
            ad = tl.load(AD + cols, mask=sm, other=0.0)
            ll = tl.load(LL + cols, mask=sm, other=0.0)
            il = tl.load(INVL + cols, mask=sm, other=0.0)
            p = gn - acc - ad[None, :]  # <x - a, d>
            t = tl.minimum(tl.maximum(p * il[None, :], 0.0), 1.0)
            d = xx[:, None] - 2.0 * acc + cc[None, :] - 2.0 * t * p + t * t * ll[None, :]
            valid = (cl < BLOCK_M - 1) & sm
        else:
            d = xx[:, None] - 2.0 * acc + cc[None, :]
            valid = cm
        # a NaN (overflow) becomes -inf so that it surfaces as a candidate and the row gets flagged
        d = tl.where(d != d, -inf, tl.maximum(d, 0.0))
        d = tl.where(valid[None, :], d, inf)
        # only as many extraction rounds as the row that gains most from this tile needs (0 once every row's
        # 4th best is below the whole tile, the common case after the first tiles); ties are not inserted
        # (strict '<'), so earlier (lower) indices stay first
        need = tl.sum((d < b4[:, None]).to(tl.int32), axis=1)
        rounds = tl.minimum(tl.max(need, axis=0), 4)
        for _ in range(rounds):
            m, a = tl.min(d, axis=1, return_indices=True, return_indices_tie_break_left=True)
            b1, b2, b3, b4, i1, i2, i3, i4 = _insert(b1, b2, b3, b4, i1, i2, i3, i4, m, (j0 + a).to(tl.int32))
            d = tl.where(cl[None, :] == a[:, None], inf, d)
    o = rows.to(tl.int64) * 4
    tl.store(OUT_D + o + 0, b1, mask=rmask)
    tl.store(OUT_D + o + 1, b2, mask=rmask)
    tl.store(OUT_D + o + 2, b3, mask=rmask)
    tl.store(OUT_D + o + 3, b4, mask=rmask)
    tl.store(OUT_I + o + 0, i1, mask=rmask)
    tl.store(OUT_I + o + 1, i2, mask=rmask)
    tl.store(OUT_I + o + 2, i3, mask=rmask)
    tl.store(OUT_I + o + 3, i4, mask=rmask)

@triton.jit
def _rescore_kernel(P, V, MEAN64, CAND_D, CAND_I, OUT_I, OUT_T, OUT_D, OUT_U, N, D,
                    stride_pn, stride_pd, stride_vm, stride_vd, bound_f, bound_abs, cmax,
                    SEGMENTS: tl.constexpr, K: tl.constexpr, CERTIFY: tl.constexpr,
                    BLOCK_R: tl.constexpr, BLOCK_K: tl.constexpr):
    # One pass over D for all four candidates at once, in float64 from the raw float32 inputs: x - v of two
    # float32 numbers is exact in float64, so no centring (and no float64 copy of the vertices) is needed.
    # Per candidate j (segment a = v_j -> b = v_{j+1}):  |x - a|^2, p = <x - a, b - a>, L = |b - a|^2, |x - b|^2;
    # t = clamp(p / L) and the distance  |x - a|^2 at t = 0,  |x - b|^2 at t = 1  (so a point on a shared vertex
    # is an exact tie between the two segments, resolved to the lower index like the brute force), else
    # |x - a|^2 - t (2 p - t L).
    pid = tl.program_id(0)
    rows = pid * BLOCK_R + tl.arange(0, BLOCK_R)
    rmask = rows < N
    roff = rows.to(tl.int64) * stride_pn
    kc = tl.arange(0, 4)
    cmask = rmask[:, None] & (kc[None, :] < K)
    o = rows.to(tl.int64)[:, None] * 4 + kc[None, :]
    j = tl.load(CAND_I + o, mask=cmask, other=0).to(tl.int64)  # (BLOCK_R, 4)
    cd = tl.load(CAND_D + o, mask=cmask, other=0.0)
    bad = tl.max((cd == float("-inf")).to(tl.int32), axis=1) > 0
    aoff = j * stride_vm
    ks = tl.arange(0, BLOCK_K)
    xn = tl.zeros([BLOCK_R], dtype=tl.float64)
    xa2 = tl.zeros([BLOCK_R, 4], dtype=tl.float64)
    pp = tl.zeros([BLOCK_R, 4], dtype=tl.float64)
    ll = tl.zeros([BLOCK_R, 4], dtype=tl.float64)
    xb2 = tl.zeros([BLOCK_R, 4], dtype=tl.float64)
    for k0 in range(0, D, BLOCK_K):
        kk = k0 + ks
        km = kk < D
        m2 = rmask[:, None] & km[None, :]
        x = tl.load(P + roff[:, None] + kk[None, :].to(tl.int64) * stride_pd, mask=m2, other=0.0).to(tl.float64)
        mu = tl.load(MEAN64 + kk, mask=km, other=0.0)
        xs = tl.where(m2, x - mu[None, :], 0.0)
        xn += tl.sum(xs * xs, axis=1)
        m3 = cmask[:, :, None] & km[None, None, :]
        koff = kk[None, None, :].to(tl.int64) * stride_vd
        a = tl.load(V + aoff[:, :, None] + koff, mask=m3, other=0.0).to(tl.float64)
        xa = tl.where(m3, x[:, None, :] - a, 0.0)
        xa2 += tl.sum(xa * xa, axis=2)
        if SEGMENTS:
            b = tl.load(V + aoff[:, :, None] + stride_vm + koff, mask=m3, other=0.0).to(tl.float64)
            dv = tl.where(m3, b - a, 0.0)
            xb = tl.where(m3, x[:, None, :] - b, 0.0)
            pp += tl.sum(xa * dv, axis=2)
            ll += tl.sum(dv * dv, axis=2)
            xb2 += tl.sum(xb * xb, axis=2)
    if SEGMENTS:
        t = tl.where(ll > 0, pp / tl.where(ll > 0, ll, 1.0), 0.0)
        t = tl.minimum(tl.maximum(t, 0.0), 1.0)
        dist = tl.where(t == 1.0, xb2, tl.where(t == 0.0, xa2, xa2 - t * (2.0 * pp - t * ll)))
        dist = tl.maximum(dist, 0.0)
    else:
        t = tl.zeros([BLOCK_R, 4], dtype=tl.float64)
        dist = xa2
    dist = tl.where(cmask, dist, float("inf"))
    best_d = tl.min(dist, axis=1)
    # ties -> the lowest index; a NaN distance leaves best_d NaN and the row is flagged below
    best_i = tl.min(tl.where(dist == best_d[:, None], j, 2 ** 62), axis=1)
    best_t = tl.sum(tl.where((j == best_i[:, None]) & (dist == best_d[:, None]), t, 0.0), axis=1)
    unsure = bad | (best_d != best_d) | (best_d == float("inf")) | (tl.max((dist != dist).to(tl.int32), axis=1) > 0)
    if CERTIFY:
        kth = tl.load(CAND_D + rows.to(tl.int64) * 4 + (K - 1), mask=rmask, other=0.0).to(tl.float64)
        e = tl.sqrt(xn) + cmax
        bound = bound_f * e * e + bound_abs
        # "not certified", so that NaN/Inf anywhere leaves the row to the fallback
        ok = (kth < float("inf")) & (kth - bound > best_d)
        unsure = unsure | (ok == 0)
    best_i = tl.where(best_i == 2 ** 62, 0, best_i)
    tl.store(OUT_I + rows, best_i, mask=rmask)
    tl.store(OUT_T + rows, best_t.to(tl.float32), mask=rmask)
    tl.store(OUT_D + rows, best_d.to(tl.float32), mask=rmask)
    tl.store(OUT_U + rows, unsure, mask=rmask)
