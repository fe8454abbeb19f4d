"""Property test of segment_assign / nearest_point: exact at any scale, in every dtype, for every backend.

Hypothesis draws shapes, dtypes (float16 / bfloat16 / float32 / float64), power-of-two scales from 2^-100
(~1e-30) to 2^100 (~1e30) (float64 also 2^-1000 .. 2^1000; scales a dtype cannot hold finitely are skipped),
different scales for points and vertices, strided views, and degenerate curves (M = 1, 2, repeated vertices,
points exactly on vertices).  The oracle is the float64 brute force of the inputs as given, scaled exactly by
the power of two that brings their largest magnitude into [1/2, 1) (exact for every value of these dtypes at
these scales), with distances scaled back by numpy's correctly rounded ldexp.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import latentfast  # noqa: F401
from latentfast import _dispatch
from latentfast._dispatch import BackendUnavailable
from latentfast.ops import segment_assign as sa
from latentfast.ops.segment_assign import reference, scaling

from conftest import TRITON_DEVICE, on_device

NATIVE_BUILT = _dispatch.native_module() is not None
TRITON_OK = not _dispatch.triton_why_not(torch.zeros(1, device=TRITON_DEVICE))
DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]


@st.composite
def cases(draw, max_n=12, max_d=6, max_m=8):
    dtype = draw(st.sampled_from(DTYPES))
    n = draw(st.integers(0, max_n))
    dim = draw(st.integers(1, max_d))
    m = draw(st.integers(1, max_m))
    seed = draw(st.integers(0, 2 ** 31 - 1))
    lim = 1000 if dtype == torch.float64 else 100
    kc = draw(st.integers(-lim, lim))
    kx = kc + draw(st.sampled_from([0, 0, 0, -7, 5, -30, 30]))       # points at another scale, sometimes
    g = torch.Generator().manual_seed(seed)
    c = torch.randn(m, dim, generator=g, dtype=torch.float64).cumsum(0) + 3.0 * torch.randn(1, dim, generator=g,
                                                                                           dtype=torch.float64)
    if m > 2 and draw(st.booleans()):                                 # repeated vertices: zero-length segments
        j = draw(st.integers(0, m - 2))
        c[j + 1] = c[j]
    x = c[torch.randint(0, m, (n,), generator=g)] + torch.randn(n, dim, generator=g, dtype=torch.float64)
    if n and draw(st.booleans()):                                     # points exactly on vertices
        x[: (n + 1) // 2] = c[torch.randint(0, m, ((n + 1) // 2,), generator=g)]
    xs = (x * 2.0 ** kx).to(dtype)          # float64 multiply by 2^k is exact at these k; the cast rounds
    cs = (c * 2.0 ** kc).to(dtype)
    finite = bool(torch.isfinite(xs).all() and torch.isfinite(cs).all())
    strided = draw(st.sampled_from(["contiguous", "columns", "transposed"]))
    if strided == "columns":                                          # column stride 2
        wide = torch.zeros(n, 2 * dim, dtype=dtype)
        wide[:, ::2] = xs
        xs = wide[:, ::2]
    elif strided == "transposed":                                     # column-major vertices
        cs = cs.t().contiguous().t()
    segments = draw(st.booleans())
    return xs, cs, segments, finite


def oracle(points, vertices, segments):
    """Brute force on the exactly rescaled inputs: (index, t, distance_sq float64 rescaled, exponent e)."""
    x64, c64 = points.to(torch.float64), vertices.to(torch.float64)
    amax = max([float(v.abs().max()) for v in (x64, c64) if v.numel()] + [0.0])
    e = int(np.frexp(amax)[1])
    xn = torch.from_numpy(np.ldexp(x64.numpy(), -e))
    cn = torch.from_numpy(np.ldexp(c64.numpy(), -e))
    return xn, cn, reference.brute_force(xn, cn, segments=segments), e


def check(points, vertices, segments, result):
    out = torch.float64 if torch.float64 in (points.dtype, vertices.dtype) else torch.float32
    index, d = result.index, result.distance_sq
    n = points.shape[0]
    assert index.shape == (n,) and index.dtype == torch.int64
    assert d.shape == (n,) and d.dtype == out
    if n == 0:
        return
    xn, cn, (bi, bt, bd), e = oracle(points, vertices, segments)
    s = cn.shape[0] - 1 if segments else cn.shape[0]
    assert bool(((index >= 0) & (index < max(s, 1))).all())
    c2 = cn.expand(2, -1) if segments and cn.shape[0] == 1 else cn
    mine, mt = reference.exact_scores(xn, c2, index.unsqueeze(1), segments)
    mine, mt = mine.squeeze(1), mt.squeeze(1)
    # index: the brute force's, or a float64 tie with it (the same rule as test_segment_assign.py)
    scale = 1.0 + xn.pow(2).sum(1)
    tie = (mine - bd).abs() <= 1e-6 * bd + 1e-12 * scale
    bad = ~((index == bi) | tie)
    assert not bool(bad.any()), f"rows {bad.nonzero().squeeze(1).tolist()}: {index[bad]} vs {bi[bad]}"
    eps = torch.finfo(out).eps
    if segments:
        t = result.t
        assert t.dtype == out and bool(((t >= 0) & (t <= 1)).all())
        same = index == bi
        # the exact t of the chosen segment, rounded once to the output dtype
        assert torch.allclose(t[same].to(torch.float64), bt[same], rtol=0, atol=4 * eps), (t[same], bt[same])
    # distance: the chosen segment's exact distance scaled back, rounded once; inf only where it overflows
    with np.errstate(over="ignore"):
        true = torch.from_numpy(np.ldexp(mine.numpy(), 2 * e)).to(out)
    over = torch.isinf(true)
    assert torch.equal(torch.isinf(d), over), (d, true)
    tiny = float(torch.finfo(out).smallest_normal) * eps              # one subnormal step
    assert torch.allclose(d[~over].to(torch.float64), true[~over].to(torch.float64), rtol=4 * eps, atol=tiny), \
        (d, true)


def run(points, vertices, segments, backend):
    if backend == "triton":
        points, vertices = on_device(points, TRITON_DEVICE), on_device(vertices, TRITON_DEVICE)
    fn = sa.segment_assign if segments else sa.nearest_point
    r = fn(points, vertices, backend=backend)
    return type(r)(*(v.cpu() for v in r))


def _property(backend, case):
    points, vertices, segments, finite = case
    if not finite:  # the dtype cannot hold this scale: the public function must refuse it clearly
        with pytest.raises(ValueError, match="expected finite values"):
            run(points, vertices, segments, backend)
        return
    try:
        r = run(points, vertices, segments, backend)
    except BackendUnavailable as err:
        # only triton refuses, and only float64 work (float64 inputs, or inputs outside its float32 range)
        assert backend == "triton" and "float64" in str(err), err
        return
    check(points, vertices, segments, r)


SETTINGS = dict(deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


@settings(max_examples=60, **SETTINGS)
@given(case=cases())
def test_reference_exact_at_any_scale(case):
    _property("reference", case)


@pytest.mark.skipif(not NATIVE_BUILT, reason="latentfast._C not built")
@settings(max_examples=60, **SETTINGS)
@given(case=cases())
def test_native_exact_at_any_scale(case):
    _property("native", case)


@pytest.mark.skipif(not TRITON_OK, reason="triton unavailable here")
@settings(max_examples=25, **SETTINGS)
@given(case=cases(max_n=8, max_d=4, max_m=6))
def test_triton_exact_at_any_scale(case):
    _property("triton", case)


@settings(max_examples=60, **SETTINGS)
@given(x=st.lists(st.floats(allow_nan=False, allow_infinity=False, width=64), min_size=1, max_size=8),
       k=st.integers(-2300, 2300), dtype=st.sampled_from(DTYPES))
def test_ldexp_rounds_once(x, k, dtype):
    """scaling.ldexp(x, k, dtype) is numpy's correctly rounded ldexp, rounded once to dtype."""
    x64 = torch.tensor(x, dtype=torch.float64)
    got = scaling.ldexp(x64, k, dtype)
    with np.errstate(over="ignore"):
        want64 = np.ldexp(x64.numpy(), k)
    if dtype == torch.float64:
        assert np.array_equal(got.numpy(), want64)
    elif np.all(np.abs(want64[want64 != 0]) >= 2.0 ** -1000):  # float64 exact: one rounding to dtype
        assert torch.equal(got, torch.from_numpy(want64).to(dtype))
