"""segment_assign / nearest_point: every backend against the float64 brute force (reference.brute_force).

Agreement means: the same segment, or a float64 tie (the chosen segment's exact distance within 1e-6 relative
of the brute force's minimum); the brute force resolves exact ties to the lowest index.  The Triton backend
runs in its interpreter here (conftest sets TRITON_INTERPRET=1 without a GPU), with small inputs.
"""
from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import latentfast  # noqa: F401  (registers the ops)
from latentfast import _dispatch
from latentfast._dispatch import BackendUnavailable
from latentfast.ops import segment_assign as sa
from latentfast.ops.segment_assign import native, reference
from latentfast.ops.segment_assign import triton as sa_triton

from conftest import TRITON_DEVICE, on_device, poison_

DATA = Path(__file__).resolve().parents[1] / "data" / "sfvq_stylegan2_ffhq"
NATIVE_BUILT = _dispatch.native_module() is not None
TRITON_OK = not _dispatch.triton_why_not(torch.zeros(1, device=TRITON_DEVICE))

BACKENDS = [
    "reference",
    pytest.param("native", marks=pytest.mark.skipif(not NATIVE_BUILT, reason="latentfast._C not built")),
    pytest.param("triton", marks=pytest.mark.skipif(not TRITON_OK, reason="triton unavailable here")),
]


# --- helpers -----------------------------------------------------------------------------------------------------

def exact_distance(points, vertices, index, segments=True):
    """Float64 distance from each point to the segment (or vertex) ``index`` by the direct formula."""
    c64 = vertices.to(torch.float64)
    if segments and c64.shape[0] == 1:
        c64 = c64.expand(2, -1)
    d, _ = reference.exact_scores(points.to(torch.float64), c64, index.unsqueeze(1), segments)
    return d.squeeze(1)


def assert_exact(points, vertices, result, oracle, segments=True):
    """``result`` = (index, t, distance_sq) agrees with the brute force ``oracle`` (see the module docstring)."""
    index, t, d = result[0], result[-2] if segments else None, result[-1]
    bi, bt, bd = oracle
    n = points.shape[0]
    assert index.shape == (n,) and index.dtype == torch.int64
    assert d.shape == (n,) and d.dtype == points.dtype
    s = vertices.shape[0] - 1 if segments else vertices.shape[0]
    assert bool(((index >= 0) & (index < max(s, 1))).all())
    mine = exact_distance(points, vertices, index, segments)
    scale = 1.0 + points.to(torch.float64).pow(2).sum(1)
    same = index == bi
    tie = (mine - bd).abs() <= 1e-6 * bd.abs() + 1e-12 * scale
    bad = ~(same | tie)
    assert not bool(bad.any()), (
        f"{int(bad.sum())} of {n} rows pick a worse segment, e.g. row {int(bad.nonzero()[0])}: "
        f"got {int(index[bad][0])} at {float(mine[bad][0])}, brute force {int(bi[bad][0])} at {float(bd[bad][0])}")
    # the returned distance is the exact one (rounded to the output dtype)
    rel = 1e-12 if d.dtype == torch.float64 else 1e-6
    assert torch.allclose(d.to(torch.float64), bd, rtol=rel, atol=1e-12 * float(scale.max()))
    if segments:
        assert t.dtype == points.dtype
        assert bool(((t >= 0) & (t <= 1)).all())
        # t and index together give the nearest point: its distance is the reported one
        c64 = vertices.to(torch.float64)
        nxt = (index + 1).clamp_max(c64.shape[0] - 1)
        p = c64[index] + t.to(torch.float64).unsqueeze(1) * (c64[nxt] - c64[index])
        dp = (points.to(torch.float64) - p).pow(2).sum(1)
        tol_t = 1e-12 if t.dtype == torch.float64 else 1e-6
        seglen2 = (c64[nxt] - c64[index]).pow(2).sum(1)
        # rounding t to the output dtype moves the point by |dt| |d|; the distance changes by ~2 |dt| |d| |x - p|
        slack = 2 * tol_t * seglen2.sqrt() * bd.sqrt() + tol_t ** 2 * seglen2 + 1e-12 * scale
        assert bool(((dp - bd).abs() <= 1e-6 * bd + slack).all())


def curve_points(vertices: torch.Tensor, n: int, noise: float, gen: torch.Generator) -> torch.Tensor:
    """n points at a random place on a random segment of the curve, plus Gaussian noise per dimension."""
    m, dim = vertices.shape
    j = torch.randint(0, max(m - 1, 1), (n,), generator=gen)
    nxt = (j + 1).clamp_max(m - 1)
    t = torch.rand(n, 1, generator=gen, dtype=vertices.dtype)
    return vertices[j] + t * (vertices[nxt] - vertices[j]) + noise * torch.randn(n, dim, generator=gen,
                                                                                  dtype=vertices.dtype)


@functools.lru_cache(maxsize=None)
def random_case(n: int, dim: int, m: int, dtype=torch.float32, segments=True):
    """A random walk curve away from the origin (the expanded formula's hard case), points around it, oracle."""
    g = torch.Generator().manual_seed(1000 * n + 10 * dim + m)
    c = (torch.randn(m, dim, generator=g, dtype=torch.float64).cumsum(0) * 0.3 + 5.0).to(dtype)
    x = curve_points(c.to(torch.float64), n, 0.5, g).to(dtype)
    return x, c, reference.brute_force(x, c, segments=segments)


def run(points, vertices, backend, segments=True, **kw):
    """The public function; the triton backend runs on TRITON_DEVICE (strides kept) and answers on the CPU."""
    if backend == "triton":
        points, vertices = on_device(points, TRITON_DEVICE), on_device(vertices, TRITON_DEVICE)
    fn = sa.segment_assign if segments else sa.nearest_point
    r = fn(points, vertices, backend=backend, **kw)
    return type(r)(*(v.cpu() for v in r))


def assign_into(backend, x, c, segments, outs, **kw):
    """A backend's kernel entry into preallocated outputs (moved to TRITON_DEVICE and back for triton)."""
    if backend == "native":
        return native.assign_into(x, c, segments, *outs, **kw)
    dev = lambda t: on_device(t, TRITON_DEVICE)  # noqa: E731
    douts = [dev(o) for o in outs]
    if "cand" in kw:
        kw["cand"] = tuple(dev(t) for t in kw["cand"])
    sa_triton.assign_into(dev(x), dev(c), segments, *douts, **kw)
    for o, d in zip(outs, douts):
        o.copy_(d)
    if "cand" in kw:
        return tuple(t.cpu() for t in kw["cand"])


def authors_rule(points: torch.Tensor, vertices: torch.Tensor) -> torch.Tensor:
    """The SFVQ authors' inference, restated: take the nearest VERTEX j*, then project only onto the two
    segments that touch it (j*-1 -> j* and j* -> j*+1, where they exist) and keep the closer one."""
    x64, c64 = points.to(torch.float64), vertices.to(torch.float64)
    m = c64.shape[0]
    jstar = torch.cdist(x64, c64).argmin(1)
    left = (jstar - 1).clamp(0, m - 2)
    right = jstar.clamp(0, m - 2)
    cand = torch.stack([left, right], 1)
    d, _ = reference.exact_scores(x64, c64, cand, True)
    return cand.gather(1, d.argmin(1, keepdim=True)).squeeze(1)


# --- random inputs and awkward shapes -----------------------------------------------------------------------------

SHAPES = [(63, 100, 17), (1, 512, 1025), (63, 512, 1025), (1000, 1, 17), (1000, 100, 2), (1000, 100, 1),
          (63, 1, 1025), (1000, 512, 17), (63, 100, 1)]


@pytest.mark.parametrize("shape", SHAPES, ids=[f"N{n}-D{d}-M{m}" for n, d, m in SHAPES])
@pytest.mark.parametrize("backend", BACKENDS)
def test_random_matches_brute_force(backend, shape):
    x, c, oracle = random_case(*shape)
    assert_exact(x, c, run(x, c, backend), oracle)


@pytest.mark.parametrize("backend", BACKENDS)
def test_reference_and_backend_agree_on_index(backend):
    x, c, _ = random_case(63, 100, 17)
    a, b = run(x, c, "reference"), run(x, c, backend)
    assert torch.equal(a.index, b.index)


@pytest.mark.parametrize("shape", [(63, 100, 17), (1000, 30, 2), (63, 512, 1025)],
                         ids=lambda s: f"N{s[0]}-D{s[1]}-M{s[2]}")
@pytest.mark.parametrize("backend", BACKENDS)
def test_nearest_point_matches_brute_force(backend, shape):
    x, c, oracle = random_case(*shape, segments=False)
    r = run(x, c, backend, segments=False)
    assert_exact(x, c, r, oracle, segments=False)


@pytest.mark.parametrize("backend", BACKENDS)
def test_float64(backend):
    x, c, oracle = random_case(63, 100, 17, torch.float64)
    if backend == "triton":
        with pytest.raises(BackendUnavailable, match="float64"):
            run(x, c, backend)
        return
    assert_exact(x, c, run(x, c, backend), oracle)


@pytest.mark.parametrize("backend", ["auto", "reference"])
def test_half_inputs_compute_in_float32(backend):
    x, c, _ = random_case(63, 100, 17)
    r = sa.segment_assign(x.half(), c.half(), backend=backend)
    assert r.t.dtype == torch.float32 and r.distance_sq.dtype == torch.float32
    assert_exact(x.half().float(), c.half().float(), r, reference.brute_force(x.half(), c.half()))


@pytest.mark.parametrize("backend", BACKENDS)
def test_small_chunks_cross_block_boundaries(backend):
    x, c, oracle = random_case(63, 100, 17)
    assert_exact(x, c, run(x, c, backend, chunk_size=7), oracle)


@pytest.mark.parametrize("backend", BACKENDS)
def test_zero_length_segments(backend):
    g = torch.Generator().manual_seed(3)
    c = torch.randn(12, 40, generator=g) + 3.0
    c[4] = c[5] = c[6] = c[3]          # three zero-length segments in a row
    c[10] = c[9]
    x = torch.cat([curve_points(c, 50, 0.3, g), c[[3, 9, 0, 11]]])  # and points exactly on repeated vertices
    r = run(x, c, backend)
    oracle = reference.brute_force(x, c)
    assert_exact(x, c, r, oracle)
    assert r.index[-4].item() == 2 and r.index[-3].item() == 8  # on a vertex: the lowest of the tied segments
    assert bool((r.t[-4:] >= 0).all())


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_points(backend):
    c = torch.randn(5, 3)
    r = run(torch.empty(0, 3), c, backend)
    assert r.index.shape == (0,) and r.index.dtype == torch.int64
    assert r.t.shape == (0,) and r.distance_sq.shape == (0,) and r.distance_sq.dtype == torch.float32


@pytest.mark.parametrize("backend", BACKENDS)
def test_single_vertex(backend):
    c = torch.randn(1, 9)
    x = torch.randn(20, 9)
    r = run(x, c, backend)
    assert torch.equal(r.index, torch.zeros(20, dtype=torch.int64))
    assert torch.equal(r.t, torch.zeros(20))
    torch.testing.assert_close(r.distance_sq, (x - c).pow(2).sum(1), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_contiguous_inputs(backend):
    x, c, oracle = random_case(63, 100, 17)
    wide = torch.zeros(63, 200)
    wide[:, ::2] = x
    xs = wide[:, ::2]                         # column stride 2
    cs = c.t().contiguous().t()               # column-major vertices
    assert not xs.is_contiguous() and not cs.is_contiguous()
    assert_exact(x, c, run(xs, cs, backend), oracle)
    tall = torch.zeros(126, 100)
    tall[::2] = x
    xr = tall[::2]                            # row stride 200
    assert not xr.is_contiguous()
    assert_exact(x, c, run(xr, c, backend), oracle)


@pytest.mark.parametrize("backend", BACKENDS)
def test_many_way_tie_goes_through_the_fallback(backend):
    """A point at the centre of a regular polygon is equidistant from all its edges: more than K candidates tie,
    certification must fail and the fallback must return the lowest index.  The native kernel's fallback is its
    own second pass (every segment the bound does not rule out, re-scored exactly): it finishes the rows itself,
    with the brute force's answer; the Triton kernel leaves them to the caller."""
    m = 33
    ang = torch.arange(m, dtype=torch.float64) * (2 * torch.pi / (m - 1))  # closed: last vertex = first
    c = torch.zeros(m, 16, dtype=torch.float64)
    c[:, 0], c[:, 1] = torch.cos(ang), torch.sin(ang)
    c[-1] = c[0]
    c = (c + 100.0).float()                       # far from the origin
    x = torch.full((3, 16), 100.0)
    r = run(x, c, backend)
    oracle = reference.brute_force(x, c)
    assert_exact(x, c, r, oracle)
    if backend in ("native", "triton"):
        n = x.shape[0]
        outs = (torch.empty(n, dtype=torch.int64), torch.empty(n), torch.empty(n), torch.zeros(n, dtype=torch.bool))
        assign_into(backend, x, c, True, outs)
        if backend == "triton":
            assert bool(outs[3].all()), "near-ties among more than K segments must not be certified"
        else:
            assert not bool(outs[3].any()), "the second pass finishes every row"
            assert_exact(x, c, outs[:3], oracle)


# --- any scale: issue 10's examples (exact power-of-two rescaling outside the kernels' range) -------------------------

def scaled_oracle(x, c, segments=True):
    """Brute force on x, c scaled exactly by 2^-e (largest magnitude in [1/2, 1)); distances scaled back."""
    x64, c64 = x.to(torch.float64), c.to(torch.float64)
    e = int(np.frexp(max(float(x64.abs().max()), float(c64.abs().max())))[1])
    xn, cn = torch.from_numpy(np.ldexp(x64.numpy(), -e)), torch.from_numpy(np.ldexp(c64.numpy(), -e))
    bi, bt, bd = reference.brute_force(xn, cn, segments=segments)
    return bi, bt, bd, e


ISSUE10 = [(torch.float32, 1e20), (torch.float32, 1e-22), (torch.float64, 1e200), (torch.float64, 1e-200),
           (torch.float32, 3e38 / 4 / 20), (torch.bfloat16, 1e30), (torch.float16, 1e-3), (torch.float32, 1.0)]


@pytest.mark.parametrize("dtype,scale", ISSUE10, ids=[f"{str(d)[6:]}-{s:g}" for d, s in ISSUE10])
@pytest.mark.parametrize("segments", [True, False], ids=["segments", "points"])
@pytest.mark.parametrize("backend", ["reference", BACKENDS[1]])
def test_exact_at_any_scale(backend, dtype, scale, segments):
    """Issue 10: randn(500, 16) / randn(32, 16) scaled by 1e20 gave 428 wrong indices and inf distances, by
    1e-22 348 wrong, float64 at 1e200 NaN t and distances.  Now index is the brute force's, t its exact value and
    the distance exact (one rounding), inf only where the true value overflows."""
    g = torch.Generator().manual_seed(10)
    x64, c64 = torch.randn(500, 16, generator=g, dtype=torch.float64), torch.randn(32, 16, generator=g,
                                                                                   dtype=torch.float64)
    x, c = (x64 * scale).to(dtype), (c64 * scale).to(dtype)
    fn = sa.segment_assign if segments else sa.nearest_point
    r = fn(x, c, backend=backend)
    bi, bt, bd, e = scaled_oracle(x, c, segments)
    out = torch.float64 if dtype == torch.float64 else torch.float32
    assert r.distance_sq.dtype == out
    assert torch.equal(r.index, bi)
    if segments:
        assert r.t.dtype == out and not bool(r.t.isnan().any())
        torch.testing.assert_close(r.t.to(torch.float64), bt, rtol=0, atol=4 * torch.finfo(out).eps)
    with np.errstate(over="ignore"):
        true = torch.from_numpy(np.ldexp(bd.numpy(), 2 * e)).to(out)
    assert torch.equal(torch.isinf(r.distance_sq), torch.isinf(true))
    fin = ~torch.isinf(true)
    torch.testing.assert_close(r.distance_sq[fin], true[fin], rtol=4 * torch.finfo(out).eps,
                               atol=float(torch.finfo(out).smallest_normal) * torch.finfo(out).eps)
    if (dtype, scale) == (torch.float32, 1e20):
        assert bool(torch.isinf(r.distance_sq).all()), "|x - c|^2 ~ 1e41 overflows float32"


def test_mixed_scales_in_one_call():
    """Float32: a ladder of vertices near 2^60 with points 2^38 off it, and a curve near the origin with O(1)
    points, in one call: both parts exact."""
    g = torch.Generator().manual_seed(11)
    far = torch.randn(1, 8, generator=g, dtype=torch.float64) * 2.0 ** 60 + torch.zeros(6, 8, dtype=torch.float64)
    far[:, 0] += torch.arange(6, dtype=torch.float64) * 2.0 ** 40
    near = torch.randn(6, 8, generator=g, dtype=torch.float64).cumsum(0)
    c = torch.cat([far, near]).float()
    x = torch.cat([far[torch.randint(0, 6, (30,), generator=g)] + torch.randn(30, 8, generator=g,
                                                                              dtype=torch.float64) * 2.0 ** 38,
                   near[torch.randint(0, 6, (30,), generator=g)] + torch.randn(30, 8, generator=g,
                                                                               dtype=torch.float64)]).float()
    bi, bt, bd, e = scaled_oracle(x, c)
    assert e > 44, "outside the float32 kernels' window"
    for backend in ("reference", "native") if NATIVE_BUILT else ("reference",):
        r = sa.segment_assign(x, c, backend=backend)
        assert torch.equal(r.index, bi)
        torch.testing.assert_close(r.t.double(), bt, rtol=0, atol=1e-6)
        torch.testing.assert_close(r.distance_sq.double(), torch.from_numpy(np.ldexp(bd.numpy(), 2 * e)),
                                   rtol=1e-6, atol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_subnormal_rows_are_not_certified_wrongly(backend):
    """Inside the kernels' range (one row of size 1), 200 rows and the curve at 1e-22, whose float32 cheap
    distances (~1e-44) are subnormal: the certification bound's underflow term sends them to the exact
    fallback instead of certifying a wrong segment (before: 348 of 500 wrong at this scale).  In the native
    kernel that fallback is its second pass: the bound rules no segment out, every one is re-scored exactly."""
    g = torch.Generator().manual_seed(12)
    c = torch.randn(32, 16, generator=g) * 1e-22
    x = torch.cat([torch.randn(200, 16, generator=g) * 1e-22, torch.ones(1, 16)])
    r = run(x, c, backend)
    bi, bt, bd = reference.brute_force(x, c)
    assert torch.equal(r.index, bi)
    if backend in ("native", "triton"):
        n = x.shape[0]
        outs = (torch.empty(n, dtype=torch.int64), torch.empty(n), torch.empty(n), torch.zeros(n, dtype=torch.bool))
        assign_into(backend, x, c, True, outs)
        if backend == "triton":
            assert bool(outs[3][:200].all()), "subnormal-scale rows cannot be certified by the float32 formula"
        else:
            assert not bool(outs[3].any()) and torch.equal(outs[0], bi)


@pytest.mark.parametrize("backend", BACKENDS)
def test_scaling_is_exactly_covariant_inside_the_window(backend):
    """x, c -> 2^k x, 2^k c inside the kernels' float32 range: the same index and t, distances times 4^k."""
    x, c, oracle = random_case(63, 100, 17)
    r1 = run(x, c, backend)
    for k in (-40, 40):
        rk = run(x * 2.0 ** k, c * 2.0 ** k, backend)
        assert torch.equal(rk.index, r1.index)
        torch.testing.assert_close(rk.t, r1.t, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(rk.distance_sq.double() * 4.0 ** -k, r1.distance_sq.double(), rtol=1e-6, atol=0)


@pytest.mark.parametrize("bits,per_noise", [(4, 40), (10, 6)], ids=["4bit", "10bit"])
@pytest.mark.parametrize("k", [-120, -60, 60, 100])
def test_ffhq_curves_at_extreme_scales(bits, per_noise, k):
    """The FFHQ curves and their points scaled by 2^k (float32, outside the kernels' window): the same segments
    as the float64 brute force, shared-vertex ties included."""
    x, c, oracle = ffhq_case(bits, per_noise)
    xs, cs = x * 2.0 ** k, c * 2.0 ** k
    assert bool(torch.isfinite(xs).all() and torch.isfinite(cs).all())
    r = sa.segment_assign(xs, cs)
    assert torch.equal(r.index, oracle[0])
    true = torch.from_numpy(np.ldexp(oracle[2].numpy(), 2 * k)).float()
    torch.testing.assert_close(r.distance_sq, true, rtol=1e-6, atol=float(torch.finfo(torch.float32).tiny) * 2 ** -23)
    assert bool((r.distance_sq[4 * per_noise:5 * per_noise] == 0).all())


@pytest.mark.skipif(not TRITON_OK, reason="triton unavailable here")
def test_triton_explains_out_of_range_inputs():
    x, c = torch.randn(5, 3) * 1e20, torch.randn(4, 3) * 1e20
    with pytest.raises(BackendUnavailable, match=r"reach 2\^6\d in magnitude.*use backend='auto'"):
        run(x, c, "triton")


def test_public_scaling_helpers():
    x = torch.tensor([[3.0, -1e20], [0.0, 2.0]])
    e = sa.max_exponent(x, torch.tensor([1.0]))
    assert 2.0 ** (e - 1) <= 1e20 < 2.0 ** e
    assert torch.equal(sa.ldexp(sa.ldexp(x, -e), e), x)
    assert sa.max_exponent(torch.zeros(3)) == 0
    with pytest.raises(ValueError, match="expected finite values"):
        sa.max_exponent(torch.tensor([float("nan")]))
    big = torch.tensor([1e300, 3e-310], dtype=torch.float64)
    assert sa.ldexp(big, 30).tolist() == [float("inf"), float(np.ldexp(3e-310, 30))]
    assert sa.ldexp(big, -1000).tolist() == [float(np.ldexp(1e300, -1000)), 0.0]


# --- bad input ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,bad", [("points", float("nan")), ("points", float("inf")),
                                      ("vertices", float("nan")), ("vertices", -float("inf"))])
def test_non_finite_input_names_the_argument(name, bad):
    x, c = torch.randn(5, 3), torch.randn(4, 3)
    (x if name == "points" else c)[1, 2] = bad
    with pytest.raises(ValueError, match=rf"^{name}: expected finite values, got 1 NaN/Inf"):
        sa.segment_assign(x, c)


def test_bad_shapes_and_types():
    with pytest.raises(ValueError, match=r"points: expected width D = 4 .* got shape \(5, 3\)"):
        sa.segment_assign(torch.randn(5, 3), torch.randn(6, 4))
    with pytest.raises(ValueError, match=r"points: expected shape \(N, D\)"):
        sa.segment_assign(torch.randn(5), torch.randn(6, 5))
    with pytest.raises(ValueError, match=r"vertices: expected at least one vertex"):
        sa.segment_assign(torch.randn(5, 3), torch.randn(0, 3))
    with pytest.raises(TypeError, match=r"points: expected a floating-point tensor"):
        sa.segment_assign(torch.ones(5, 3, dtype=torch.int64), torch.randn(6, 3))
    with pytest.raises(TypeError, match=r"vertices: expected a torch.Tensor or numpy.ndarray"):
        sa.segment_assign(torch.randn(5, 3), [[0.0, 1.0, 2.0]])
    with pytest.raises(ValueError, match=r"backend: expected one of \['auto', 'triton', 'native', 'reference'\]"):
        sa.segment_assign(torch.randn(5, 3), torch.randn(6, 3), backend="cuda")


@pytest.mark.skipif(not NATIVE_BUILT, reason="latentfast._C not built")
def test_native_kernel_checks_its_arguments():
    x, c = torch.randn(5, 3), torch.randn(4, 3)
    outs = [torch.empty(5, dtype=torch.int64), torch.empty(5), torch.empty(5), torch.empty(5, dtype=torch.bool)]
    with pytest.raises(RuntimeError, match="t_out must have dtype"):
        native.assign_into(x, c, True, outs[0], outs[1].double(), outs[2], outs[3])
    with pytest.raises(RuntimeError, match=r"index_out must have shape \(5,\)"):
        native.assign_into(x, c, True, outs[0][:4], *outs[1:])
    with pytest.raises(RuntimeError, match="same dtype"):
        native.assign_into(x, c.double(), True, *outs)
    with pytest.raises(RuntimeError, match="num_candidates must be in"):
        native.assign_into(x, c, True, *outs, num_candidates=99)


# --- outputs poisoned before the call: every element must be written ---------------------------------------------

@pytest.mark.parametrize("backend", [
    pytest.param("native", marks=pytest.mark.skipif(not NATIVE_BUILT, reason="latentfast._C not built")),
    pytest.param("triton", marks=pytest.mark.skipif(not TRITON_OK, reason="triton unavailable here")),
])
def test_poisoned_outputs_are_fully_written(backend):
    x, c, oracle = random_case(63, 100, 17)
    n = x.shape[0]
    outs = [poison_(torch.empty(n, dtype=torch.int64)), poison_(torch.empty(n)), poison_(torch.empty(n)),
            torch.ones(n, dtype=torch.bool)]  # "unsure" poisoned to True
    kw = {}
    if backend == "triton":
        kw["cand"] = (poison_(torch.empty(n, 4)), poison_(torch.empty(n, 4, dtype=torch.int32)))
    cand = assign_into(backend, x, c, True, outs, **kw)
    assert not bool(outs[1].isnan().any() | outs[2].isnan().any())
    assert not bool(outs[3].any()), "these well-separated points are all certifiable"
    assert_exact(x, c, (outs[0], outs[1], outs[2]), oracle)
    if backend == "triton":
        cd, ci = cand
        assert not bool(cd.isnan().any()) and bool((ci >= 0).all())
        assert bool((cd[:, 1:] >= cd[:, :-1]).all()), "candidates come sorted by cheap distance"


# --- the real FFHQ curves -------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def ffhq_case(bits: int, per_noise: int):
    c = torch.from_numpy(np.load(DATA / f"codebook_{bits}bit.npy"))
    g = torch.Generator().manual_seed(bits)
    c64 = c.to(torch.float64)
    parts = [curve_points(c64, per_noise, s, g) for s in (0.0, 0.5, 1.0, 2.0)]
    m = c.shape[0]
    j = torch.randint(0, m - 1, (per_noise,), generator=g)
    parts.append(c64[j])                                             # exactly on vertices
    t = torch.rand(per_noise, 1, generator=g, dtype=torch.float64)
    parts.append(c64[j] + t * (c64[j + 1] - c64[j]))                 # on segments (up to float32 rounding)
    x = torch.cat(parts).float()
    return x, c, reference.brute_force(x, c)


@pytest.mark.parametrize("bits,per_noise", [(4, 40), (7, 40), (10, 12)], ids=["4bit", "7bit", "10bit"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_ffhq_curves(backend, bits, per_noise):
    x, c, oracle = ffhq_case(bits, per_noise)
    r = run(x, c, backend)
    assert_exact(x, c, r, oracle)
    # stronger than the tie tolerance: shared-vertex ties are exact float64 ties in every backend's re-scoring
    # (x - c_{j+1} at t = 1), so all resolve them to the lowest index like the brute force
    assert torch.equal(r.index, oracle[0])
    k = per_noise
    on_vertex = r.index[4 * k:5 * k]
    # a point on vertex j is at distance 0 from segments j-1 and j: the tie goes to the lower one
    assert bool((r.distance_sq[4 * k:5 * k] == 0).all())
    assert torch.equal(on_vertex, oracle[0][4 * k:5 * k])


@pytest.mark.parametrize("backend", BACKENDS)
def test_equidistant_from_two_segments(backend):
    """Two parallel segments at distance exactly 1 from the point, far from the origin in 512 dimensions:
    an exact float64 tie that the float32 GEMM cannot resolve; the lowest index must win."""
    base = torch.full((512,), 1000.0)
    pts2d = torch.tensor([[0.0, 0.0], [1.0, 0.0], [3.0, 2.0], [1.0, 2.0], [0.0, 2.0]])
    c = base.repeat(5, 1)
    c[:, 7], c[:, 300] = base[0] + pts2d[:, 0], base[0] + pts2d[:, 1]
    x = base.clone().unsqueeze(0)
    x[0, 7], x[0, 300] = 1000.5, 1001.0
    r = run(x, c, backend)
    oracle = reference.brute_force(x, c)
    assert oracle[2].item() == 1.0 and oracle[0].item() == 0
    assert exact_distance(x, c, torch.tensor([3])).item() == 1.0   # segment 3 ties exactly
    assert r.index.item() == 0 and r.distance_sq.item() == 1.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_authors_two_neighbour_rule_is_wrong_here(backend):
    """Constructed counterexample: the nearest vertex (c3) only touches segments at distance 1.5, while the long
    segment 0 passes at distance 1 between two far-away vertices."""
    c2d = torch.tensor([[-10.0, 0.0], [10.0, 0.0], [5.0, 2.5], [0.0, 2.5], [-5.0, 2.5]])
    c = torch.cat([c2d, torch.zeros(5, 3)], 1)
    x = torch.tensor([[0.0, 1.0, 0.0, 0.0, 0.0]])
    theirs = authors_rule(x, c)
    r = run(x, c, backend)
    assert theirs.item() in (2, 3) and exact_distance(x, c, theirs).item() == pytest.approx(2.25)
    assert r.index.item() == 0 and r.distance_sq.item() == pytest.approx(1.0)
    assert_exact(x, c, r, reference.brute_force(x, c))


def test_authors_rule_is_worse_on_the_ffhq_curve_and_ours_is_not():
    x, c, oracle = ffhq_case(7, 40)
    noisy = slice(40 * 2, 40 * 4)  # noise 1 and 2 per dimension
    theirs = authors_rule(x[noisy], c)
    worse = exact_distance(x[noisy], c, theirs) > oracle[2][noisy] * (1 + 1e-6)
    assert int(worse.sum()) > 0, "the FFHQ points should contain cases the two-neighbour rule gets wrong"
    assert_exact(x, c, sa.segment_assign(x, c), oracle)


# --- dispatch: fallback, forcing, unavailable backends ---------------------------------------------------------------

def _no_native(monkeypatch):
    monkeypatch.setattr(_dispatch, "native_module", lambda: None)
    monkeypatch.setattr(native, "native_module", lambda: None)


def test_native_unavailable_raises_with_reason_and_auto_falls_back(monkeypatch):
    _no_native(monkeypatch)
    x, c, oracle = random_case(63, 100, 17)
    with pytest.raises(BackendUnavailable, match=r"backend 'native' cannot serve.*latentfast._C is not built"):
        sa.segment_assign(x, c, backend="native")
    assert sa.OP.select("auto", x, c, True, None).name == "reference"
    assert_exact(x, c, sa.segment_assign(x, c), oracle)


def test_import_and_results_without_the_extension():
    """A fresh interpreter in which latentfast._C cannot be imported: import works, auto uses the reference."""
    code = (
        "import sys; sys.modules['latentfast._C'] = None\n"
        "import torch, latentfast\n"
        "from latentfast.ops import segment_assign as sa\n"
        "from latentfast.ops.segment_assign import reference\n"
        "x = torch.randn(40, 6) + 3; c = torch.randn(9, 6).cumsum(0)\n"
        "assert sa.OP.select('auto', x, c, True, None).name == 'reference'\n"
        "r = sa.segment_assign(x, c); b = reference.brute_force(x, c)\n"
        "assert torch.equal(r.index, b[0]), (r.index, b[0])\n"
        "print('ok', sa.OP.backends['native'].why_not(x, c, True, None)[0])\n"
    )
    env = dict(os.environ, LATENTFAST_BACKEND="", TRITON_INTERPRET="0")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=Path(__file__).resolve().parents[2], timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok the native extension latentfast._C is not built")


def test_auto_on_cpu_never_picks_the_triton_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    x, c = torch.randn(4, 3), torch.randn(5, 3)
    assert sa.OP.select("auto", x, c, True, None).name != "triton"
    if TRITON_OK:
        assert sa.OP.select("triton", x, c, True, None).name == "triton"  # explicit requests may use it


@pytest.mark.parametrize("forced", ["reference", "segment_assign=reference", "mlp_jvp=native,segment_assign=reference"])
def test_environment_forces_a_backend(monkeypatch, forced):
    monkeypatch.setenv("LATENTFAST_BACKEND", forced)
    x, c, oracle = random_case(63, 100, 17)
    assert sa.OP.select("auto", x, c, True, None).name == "reference"
    assert_exact(x, c, sa.segment_assign(x, c), oracle)


@pytest.mark.skipif(not TRITON_OK, reason="triton unavailable here")
def test_environment_forcing_triton_runs_triton(monkeypatch):
    monkeypatch.setenv("LATENTFAST_BACKEND", "segment_assign=triton")
    x, c, oracle = random_case(63, 100, 17)
    xd, cd = x.to(TRITON_DEVICE), c.to(TRITON_DEVICE)
    assert sa.OP.select("auto", xd, cd, True, None).name == "triton"
    r = sa.segment_assign(xd, cd)
    assert_exact(x, c, type(r)(*(v.cpu() for v in r)), oracle)


def test_environment_forcing_an_unavailable_backend_raises(monkeypatch):
    _no_native(monkeypatch)
    monkeypatch.setenv("LATENTFAST_BACKEND", "native")
    with pytest.raises(BackendUnavailable, match="not built"):
        sa.segment_assign(torch.randn(4, 3), torch.randn(5, 3))


def test_info_lists_every_backend():
    from latentfast import info

    text = info.report()
    block = text[text.index("  segment_assign"):]
    for name in ("triton", "native", "reference"):
        assert f"    {name:<10} [cpu]" in block
    assert ("native     [cpu] available" in block) == NATIVE_BUILT


# --- certification bound under TF32 ---------------------------------------------------------------------------------

def _tf32_truncate(x: torch.Tensor) -> torch.Tensor:
    """Float32 -> TF32 by dropping the 13 low mantissa bits (what tensor cores may do to tl.dot inputs)."""
    return (x.contiguous().view(torch.int32) & ~0x1FFF).view(torch.float32)


def _tf32x3_gemm(xs: torch.Tensor, cs: torch.Tensor) -> torch.Tensor:
    """Triton's "tf32x3": hi = tf32(v), lo = tf32(v - hi); hi.hi + hi.lo + lo.hi (products summed exactly)."""
    xh, ch = _tf32_truncate(xs), _tf32_truncate(cs)
    xl, cl = _tf32_truncate(xs - xh), _tf32_truncate(cs - ch)
    f = lambda a, b: a.to(torch.float64) @ b.to(torch.float64).T  # noqa: E731
    return f(xh, ch) + f(xh, cl) + f(xl, ch)


def _cheap_error(xs: torch.Tensor, cs: torch.Tensor, precision: str) -> float:
    """max |cheap - exact| / (|x~| + max|c~|)^2 with the GEMM inputs rounded as ``precision`` does (centred)."""
    if precision == "tf32":
        g = _tf32_truncate(xs).to(torch.float64) @ _tf32_truncate(cs).to(torch.float64).T  # products exact
    else:
        g = _tf32x3_gemm(xs, cs)
    x64, c64 = xs.to(torch.float64), cs.to(torch.float64)
    d = c64[1:] - c64[:-1]
    L, ad, cc = d.pow(2).sum(1), (c64[:-1] * d).sum(1), c64.pow(2).sum(1)
    xx = x64.pow(2).sum(1, keepdim=True)
    p = g[:, 1:] - g[:, :-1] - ad
    t = torch.where(L > 0, p / L, torch.zeros_like(p)).clamp(0, 1)
    cheap = xx - 2 * g[:, :-1] + cc[:-1] - 2 * t * p + t * t * L
    idx = torch.arange(c64.shape[0] - 1).expand(x64.shape[0], -1)
    exact, _ = reference.exact_scores(x64, c64, idx, True)
    scale = (x64.norm(dim=1, keepdim=True) + c64.norm(dim=1).max()) ** 2
    return ((cheap - exact).abs() / scale).max().item()


@pytest.mark.parametrize("precision", ["tf32", "tf32x3"])
def test_certification_bound_covers_the_dot_precision(precision):
    # the real curve, centred as the kernels do
    x, c, _ = ffhq_case(7, 40)
    mean = c.to(torch.float64).mean(0)
    xs, cs = (x.to(torch.float64) - mean).float(), (c.to(torch.float64) - mean).float()
    assert _cheap_error(xs, cs, precision) <= sa_triton.bound_factor(512, precision)
    # adversarial: every component loses almost 2^-10 of itself in the same direction, so the GEMM errors add up
    g = torch.Generator().manual_seed(5)
    v = 1.0 + (2 ** 13 - 1) * 2.0 ** -23
    signs = lambda n: torch.where(torch.rand(n, 512, generator=g) < 0.5, -1.0, 1.0)  # noqa: E731
    cs = signs(6) * v
    xs = cs[[0, 2, 4]].clone()                    # points on vertices: GEMM entries of size |x||c|
    err = _cheap_error(xs, cs, precision)
    assert err <= sa_triton.bound_factor(512, precision)
    if precision == "tf32":
        assert err > sa_triton.bound_factor(512, "ieee"), "TF32 can exceed the float32 bound: widening is needed"


def test_bound_factor_rejects_unknown_precision():
    with pytest.raises(ValueError, match="precision: expected 'ieee', 'tf32x3' or 'tf32', got 'bf16'"):
        sa_triton.bound_factor(8, "bf16")


# --- autograd, torch.library, torch.compile ---------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["reference", pytest.param("native", marks=pytest.mark.skipif(
    not NATIVE_BUILT, reason="latentfast._C not built"))])
@pytest.mark.parametrize("m", [1, 2, 9])
def test_gradcheck_distance(backend, m):
    g = torch.Generator().manual_seed(m)
    x = torch.randn(12, 5, generator=g, dtype=torch.float64, requires_grad=True)
    c = torch.randn(m, 5, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: sa.segment_assign(a, b, backend=backend).distance_sq, (x, c))
    assert torch.autograd.gradcheck(lambda a, b: sa.nearest_point(a, b, backend=backend).distance_sq, (x, c))


def test_gradient_formula():
    x = torch.tensor([[0.5, 2.0]], dtype=torch.float64, requires_grad=True)
    c = torch.tensor([[0.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    sa.segment_assign(x, c).distance_sq.sum().backward()
    torch.testing.assert_close(x.grad, torch.tensor([[0.0, 4.0]], dtype=torch.float64))  # 2 (x - (0.5, 0))


@pytest.mark.parametrize("backend", ["reference", pytest.param("native", marks=pytest.mark.skipif(
    not NATIVE_BUILT, reason="latentfast._C not built"))])
@pytest.mark.parametrize("m", [1, 2, 9])
def test_gradcheck_t(backend, m):
    """t carries its true gradient: d/L w.r.t. x inside the segment, 0 where clamped; and w.r.t. the vertices."""
    g = torch.Generator().manual_seed(20 + m)
    # (t jumps where a segment has zero length: no finite difference there, so none in this curve)
    c = torch.randn(m, 5, generator=g, dtype=torch.float64).cumsum(0).requires_grad_()
    x = torch.randn(12, 5, generator=g, dtype=torch.float64, requires_grad=True)
    t = sa.segment_assign(x, c, backend=backend).t
    assert t.requires_grad
    inside = (t > 0) & (t < 1)
    if m > 1:
        assert bool(inside.any()), "the test needs points inside segments"
    assert torch.autograd.gradcheck(lambda a, b: sa.segment_assign(a, b, backend=backend).t, (x, c))
    both = lambda a, b: (lambda r: r.t * 3.0 + r.distance_sq)(sa.segment_assign(a, b, backend=backend))  # noqa: E731
    assert torch.autograd.gradcheck(both, (x, c))


def test_t_gradient_formula():
    x = torch.tensor([[0.5, 2.0], [3.0, 1.0]], dtype=torch.float64, requires_grad=True)
    c = torch.tensor([[0.0, 0.0], [1.0, 0.0]], dtype=torch.float64, requires_grad=True)
    r = sa.segment_assign(x, c)
    assert r.t.tolist() == [0.5, 1.0]
    r.t.sum().backward()
    # row 0: dt/dx = d / L = (1, 0), dt/dc1 = (x - a) - 2 t d = (-0.5, 2), dt/dc0 = -(both) = (-0.5, -2);
    # row 1 is clamped at t = 1: no gradient
    torch.testing.assert_close(x.grad, torch.tensor([[1.0, 0.0], [0.0, 0.0]], dtype=torch.float64))
    torch.testing.assert_close(c.grad, torch.tensor([[-0.5, -2.0], [-0.5, 2.0]], dtype=torch.float64))


def test_gradients_are_scale_covariant_outside_the_window():
    """At 2^500 and 2^-600 (float64, rescaled path; the distances of the latter underflow to 0) the gradients
    are those at scale 1 times 2^k (distance) and 2^-k (t)."""
    g = torch.Generator().manual_seed(21)
    x0 = torch.randn(10, 4, generator=g, dtype=torch.float64)
    c0 = torch.randn(6, 4, generator=g, dtype=torch.float64).cumsum(0)
    grads = []
    for k in (0, 500, -600):
        x = (x0 * 2.0 ** k).requires_grad_()
        c = (c0 * 2.0 ** k).requires_grad_()
        r = sa.segment_assign(x, c)
        gd = torch.autograd.grad(r.distance_sq.sum(), (x, c), retain_graph=True)
        gt = torch.autograd.grad(r.t.sum(), (x, c))
        grads.append((gd, gt))
    for k, (gd, gt) in zip((500, -600), grads[1:]):
        for a, b in zip(grads[0][0], gd):
            torch.testing.assert_close(sa.ldexp(b, -k), a, rtol=1e-12, atol=1e-12)
        for a, b in zip(grads[0][1], gt):
            torch.testing.assert_close(sa.ldexp(b, k), a, rtol=1e-12, atol=1e-12)


def test_custom_op_registration():
    x, c, _ = random_case(63, 100, 17)
    op = torch.ops.latentfast.segment_assign.default
    torch.library.opcheck(op, (x, c, True, None, "auto"))
    torch.library.opcheck(op, (x.double(), c.double(), False, None, "reference"))
    torch.library.opcheck(op, (x * 2.0 ** 100, c * 2.0 ** 100, True, None, "auto", 104))  # the rescaled path
    # with gradients: the checks that apply to an op whose integer output has no gradient
    torch.library.opcheck(op, (x.double().requires_grad_(), c.double(), True, None, "auto"),
                          test_utils=("test_schema", "test_autograd_registration", "test_faketensor"))


def test_composes_with_torch_compile():
    x, c, oracle = random_case(63, 100, 17)

    def f(a, b):
        index, t, d = torch.ops.latentfast.segment_assign(a, b, True, None, "auto")
        return index + 1, d.sqrt()

    index, dist = torch.compile(f, backend="aot_eager", fullgraph=True)(x, c)
    assert torch.equal(index - 1, oracle[0])
    torch.testing.assert_close(dist.double(), oracle[2].sqrt(), rtol=1e-6, atol=1e-6)
