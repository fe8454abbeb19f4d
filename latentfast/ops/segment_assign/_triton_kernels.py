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
        x = tl.load(P + roff[:, None] + kk[None, :].to(tl.int64) * stride_pd,
                    mask=rmask[:, None] & km[None, :], other=0.0)
        mu = tl.load(MEAN + kk, mask=km, other=0.0)
        xs = tl.where(km[None, :], x - mu[None, :], 0.0)
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
            x = tl.load(P + roff[:, None] + kk[None, :].to(tl.int64) * stride_pd,
                        mask=rmask[:, None] & km[None, :], other=0.0)
            mu = tl.load(MEAN + kk, mask=km, other=0.0)
            xs = tl.where(km[None, :], x - mu[None, :], 0.0)
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
        for _ in tl.static_range(4):
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
def _rescore_kernel(P, MEAN64, C64, CAND_D, CAND_I, OUT_I, OUT_T, OUT_D, OUT_U, N, D,
                    stride_pn, stride_pd, bound_f, cmax,
                    SEGMENTS: tl.constexpr, K: tl.constexpr, CERTIFY: tl.constexpr,
                    BLOCK_R: tl.constexpr, BLOCK_K: tl.constexpr):
    pid = tl.program_id(0)
    rows = pid * BLOCK_R + tl.arange(0, BLOCK_R)
    rmask = rows < N
    roff = rows.to(tl.int64) * stride_pn
    ks = tl.arange(0, BLOCK_K)
    xn = tl.zeros([BLOCK_R], dtype=tl.float64)
    for k0 in range(0, D, BLOCK_K):
        kk = k0 + ks
        km = kk < D
        m2 = rmask[:, None] & km[None, :]
        x = tl.load(P + roff[:, None] + kk[None, :].to(tl.int64) * stride_pd, mask=m2, other=0.0).to(tl.float64)
        mu = tl.load(MEAN64 + kk, mask=km, other=0.0)
        xs = tl.where(m2, x - mu[None, :], 0.0)
        xn += tl.sum(xs * xs, axis=1)
    best_d = tl.full([BLOCK_R], float("inf"), tl.float64)
    best_t = tl.zeros([BLOCK_R], dtype=tl.float64)
    best_i = tl.full([BLOCK_R], 2 ** 62, tl.int64)
    bad = tl.zeros([BLOCK_R], dtype=tl.int1)
    o = rows.to(tl.int64) * 4
    for s in tl.static_range(K):
        j = tl.load(CAND_I + o + s, mask=rmask, other=0).to(tl.int64)
        cd = tl.load(CAND_D + o + s, mask=rmask, other=0.0)
        bad = bad | (cd == float("-inf"))
        aoff = j * D
        if SEGMENTS:
            boff = aoff + D
            p = tl.zeros([BLOCK_R], dtype=tl.float64)
            # |d|^2 in the same loop and order as <x - a, d>: for x on c_{j+1}, p == L exactly and t = 1 exactly,
            # so exact ties (a point on a vertex) stay exact and resolve to the lowest index like the brute force
            lj = tl.zeros([BLOCK_R], dtype=tl.float64)
            for k0 in range(0, D, BLOCK_K):
                kk = k0 + ks
                km = kk < D
                m2 = rmask[:, None] & km[None, :]
                x = tl.load(P + roff[:, None] + kk[None, :].to(tl.int64) * stride_pd, mask=m2,
                            other=0.0).to(tl.float64)
                mu = tl.load(MEAN64 + kk, mask=km, other=0.0)
                a = tl.load(C64 + aoff[:, None] + kk[None, :], mask=m2, other=0.0)
                b = tl.load(C64 + boff[:, None] + kk[None, :], mask=m2, other=0.0)
                diff = tl.where(m2, x - mu[None, :] - a, 0.0)
                dv = tl.where(m2, b - a, 0.0)
                p += tl.sum(diff * dv, axis=1)
                lj += tl.sum(dv * dv, axis=1)
            t = tl.where(lj > 0, p / tl.where(lj > 0, lj, 1.0), 0.0)
            t = tl.minimum(tl.maximum(t, 0.0), 1.0)
            dist = tl.zeros([BLOCK_R], dtype=tl.float64)
            for k0 in range(0, D, BLOCK_K):
                kk = k0 + ks
                km = kk < D
                m2 = rmask[:, None] & km[None, :]
                x = tl.load(P + roff[:, None] + kk[None, :].to(tl.int64) * stride_pd, mask=m2,
                            other=0.0).to(tl.float64)
                mu = tl.load(MEAN64 + kk, mask=km, other=0.0)
                a = tl.load(C64 + aoff[:, None] + kk[None, :], mask=m2, other=0.0)
                b = tl.load(C64 + boff[:, None] + kk[None, :], mask=m2, other=0.0)
                # at t = 1 use x - b: segment j+1's residual at t = 0, so shared-vertex ties stay exact
                r = tl.where(t[:, None] == 1.0, x - mu[None, :] - b, (x - mu[None, :] - a) - t[:, None] * (b - a))
                r = tl.where(m2, r, 0.0)
                dist += tl.sum(r * r, axis=1)
        else:
            t = tl.zeros([BLOCK_R], dtype=tl.float64)
            dist = tl.zeros([BLOCK_R], dtype=tl.float64)
            for k0 in range(0, D, BLOCK_K):
                kk = k0 + ks
                km = kk < D
                m2 = rmask[:, None] & km[None, :]
                x = tl.load(P + roff[:, None] + kk[None, :].to(tl.int64) * stride_pd, mask=m2,
                            other=0.0).to(tl.float64)
                mu = tl.load(MEAN64 + kk, mask=km, other=0.0)
                a = tl.load(C64 + aoff[:, None] + kk[None, :], mask=m2, other=0.0)
                r = tl.where(m2, x - mu[None, :] - a, 0.0)
                dist += tl.sum(r * r, axis=1)
        better = (dist < best_d) | ((dist == best_d) & (j < best_i))
        best_d = tl.where(better, dist, best_d)
        best_t = tl.where(better, t, best_t)
        best_i = tl.where(better, j, best_i)
    unsure = bad | (best_d != best_d) | (best_d == float("inf"))
    if CERTIFY:
        kth = tl.load(CAND_D + o + (K - 1), mask=rmask, other=0.0).to(tl.float64)
        e = tl.sqrt(xn) + cmax
        bound = bound_f * e * e
        # "not certified", so that NaN/Inf anywhere leaves the row to the fallback
        ok = (kth < float("inf")) & (kth - bound > best_d)
        unsure = unsure | (ok == 0)
    tl.store(OUT_I + rows, best_i, mask=rmask)
    tl.store(OUT_T + rows, best_t.to(tl.float32), mask=rmask)
    tl.store(OUT_D + rows, best_d.to(tl.float32), mask=rmask)
    tl.store(OUT_U + rows, unsure, mask=rmask)
