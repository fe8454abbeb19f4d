"""Nearest segment of a polyline (and nearest point of a codebook): public functions and dispatch.

Backends, asked in order: ``triton`` (CUDA tensors), ``native`` (the C++ extension, CPU), ``reference``
(pure PyTorch, any device).  All of them return the exact answer of a float64 brute force; see
``reference.py`` for the math and the certification that makes the cheap GEMM formula exact.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional, Tuple

import torch

from ... import _checks
from ..._dispatch import Backend, BackendUnavailable, Op, register, triton_auto_why_not
from . import native as _native
from . import reference, scaling
from . import triton as _triton
from .scaling import ldexp, max_exponent  # noqa: F401  (public helpers)

Tensor = torch.Tensor


class SegmentAssignment(NamedTuple):
    """Result of :func:`segment_assign` for N points.

    index:       (N,) int64, the nearest segment j in [0, M-2] (0 when M = 1); ties go to the lowest index
    t:           (N,) in [0, 1], the nearest point is c_j + t (c_{j+1} - c_j)
    distance_sq: (N,) squared Euclidean distance to that point
    """

    index: Tensor
    t: Tensor
    distance_sq: Tensor


class PointAssignment(NamedTuple):
    """Result of :func:`nearest_point`: index (N,) int64 into the codebook, distance_sq (N,)."""

    index: Tensor
    distance_sq: Tensor


def _reference_why_not(points, vertices, segments, chunk_size):
    return []


def _reference_run(points, vertices, segments, chunk_size):
    return reference.nearest(points, vertices, segments=segments, chunk_size=chunk_size)


def _triton_auto_why_not(points, vertices, segments, chunk_size):
    return triton_auto_why_not(points, vertices)


OP = register(Op("segment_assign", [
    Backend("triton", _triton.why_not, _triton.run,
            "fused Triton GEMM + projection + running top-4, float64 re-scoring (CUDA; CPU only in the "
            "interpreter, on request)", auto_why_not=_triton_auto_why_not),
    Backend("native", _native.why_not, _native.run,
            "C++/OpenMP: ATen GEMM per block + one fused pass (CPU, float32/float64)"),
    Backend("reference", _reference_why_not, _reference_run, "pure PyTorch, chunked GEMM + exact re-scoring"),
]))


# --- torch.library registration: one custom op behind both public functions --------------------------------------
# Registered so that torch.compile / export see an opaque op with a known output shape instead of tracing into
# the dispatch (data-dependent fallbacks, C++ and Triton calls).  Backend selection happens at run time.

@torch.library.custom_op("latentfast::segment_assign", mutates_args=())
def _segment_assign_op(points: Tensor, vertices: Tensor, segments: bool, chunk_size: Optional[int],
                       backend: str, scale_exponent: int = 0) -> Tuple[Tensor, Tensor, Tensor]:
    """``scale_exponent`` e != 0: run the backends on points and vertices times 2^-e in float64 (exact, see
    scaling.py) and return distances times 2^(2e), rounded once to the inputs' dtype."""
    e = int(scale_exponent)
    if e == 0:
        return OP(points, vertices, segments, chunk_size, backend=backend)
    out = points.dtype
    xs = scaling.ldexp(points, -e, torch.float64)
    cs = scaling.ldexp(vertices, -e, torch.float64)
    try:
        index, t, d = OP(xs, cs, segments, chunk_size, backend=backend)
    except BackendUnavailable as err:
        raise BackendUnavailable(
            f"backend {backend!r}: the inputs reach 2^{e} in magnitude, outside the float32 kernels' range "
            f"(2^+-{scaling.SAFE_EXPONENT[torch.float32]}); such inputs are computed in float64 after an exact "
            f"power-of-two rescaling, which this backend does not take ({err}); use backend='auto'") from None
    return index, t.to(out), scaling.ldexp(d, 2 * e, out)


@_segment_assign_op.register_fake
def _segment_assign_fake(points, vertices, segments, chunk_size, backend, scale_exponent=0):
    n = points.shape[0]
    return (points.new_empty((n,), dtype=torch.int64), points.new_empty((n,)), points.new_empty((n,)))


def _setup_context(ctx, inputs, output):
    points, vertices, segments = inputs[:3]
    index, t, _ = output
    ctx.segments = segments
    ctx.e = int(inputs[5]) if len(inputs) > 5 else 0
    ctx.save_for_backward(points, vertices, index, t)


def _backward(ctx, grad_index, grad_t, grad_d):
    """Gradients for a fixed assignment (index is piecewise constant and carries none).

    distance_sq: d / d x = 2 (x - p) with p the nearest point; by the envelope theorem (t is optimal for the
    segment) d / d c_j = -2 (1 - t)(x - p) and d / d c_{j+1} = -2 t (x - p).
    t = <x - a, d> / L (a = c_j, d = c_{j+1} - c_j, L = |d|^2) where 0 < t < 1, constant where clamped or L = 0:
    dt / dx = d / L, dt / dc_{j+1} = ((x - a) - 2 t d) / L, dt / dc_j = -(dt / dx + dt / dc_{j+1}).
    With a scale exponent e the terms are formed from the inputs times 2^-e (float64) and scaled back by
    2^e (distance terms) and 2^-e (t terms), so that no intermediate overflows where the gradient does not.
    """
    points, vertices, index, t = ctx.saved_tensors
    e = ctx.e
    want_x, want_c = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
    if not ctx.segments:
        grad_t = None  # nearest_point: t is identically 0
    if grad_d is None and grad_t is None:
        return None, None, None, None, None, None
    dtype = points.dtype
    if e:
        points = scaling.ldexp(points, -e, torch.float64)
        vertices = scaling.ldexp(vertices, -e, torch.float64)
        t = t.to(torch.float64)
    unscale = (lambda g, k: scaling.ldexp(g, k, dtype)) if e else (lambda g, k: g)  # noqa: E731
    m = vertices.shape[0]
    a = vertices[index]
    nxt = (index + 1).clamp_max(m - 1)  # M = 1: the zero-length segment (t = 0)
    gx, ga, gb = [], [], []  # per-row terms for x, c_j and c_{j+1}, each already in the inputs' units
    if grad_d is not None:
        gd = grad_d.to(points.dtype).unsqueeze(1)
        nearest = a + t.unsqueeze(1) * (vertices[nxt] - a) if ctx.segments else a
        g = 2.0 * gd * (points - nearest)
        gx.append(unscale(g, e))
        if ctx.segments:
            ga.append(unscale(-(1.0 - t).unsqueeze(1) * g, e))
            gb.append(unscale(-t.unsqueeze(1) * g, e))
        else:
            ga.append(unscale(-g, e))
    if grad_t is not None:
        dv = vertices[nxt] - a
        L = (dv * dv).sum(1)
        inside = (t > 0) & (t < 1) & (L > 0)
        gt = grad_t.to(points.dtype)
        w = torch.where(inside, gt / torch.where(inside, L, torch.ones_like(L)), torch.zeros_like(L)).unsqueeze(1)
        tx = w * dv
        tb = w * ((points - a) - 2.0 * t.unsqueeze(1) * dv)
        gx.append(unscale(tx, -e))
        gb.append(unscale(tb, -e))
        ga.append(unscale(-(tx + tb), -e))
    grad_points = sum(gx[1:], gx[0]) if want_x else None
    grad_vertices = None
    if want_c:
        grad_vertices = torch.zeros(vertices.shape, dtype=dtype, device=vertices.device)
        grad_vertices.index_add_(0, index, sum(ga[1:], ga[0]))
        if ctx.segments:
            grad_vertices.index_add_(0, nxt, sum(gb[1:], gb[0]))
    return grad_points, grad_vertices, None, None, None, None


_segment_assign_op.register_autograd(_backward, setup_context=_setup_context)


def _validate(points, vertices, chunk_size):
    """The checked inputs in their common compute-side dtype (float16/bfloat16 -> float32), and max |value|."""
    points = _checks.as_tensor("points", points)
    vertices = _checks.as_tensor("vertices", vertices)
    _checks.check_ndim("points", points, 2, "(N, D)")
    _checks.check_ndim("vertices", vertices, 2, "(M, D)")
    _checks.check_floating("points", points)
    _checks.check_floating("vertices", vertices)
    if vertices.shape[0] < 1:
        raise ValueError(f"vertices: expected at least one vertex (M >= 1), got shape {tuple(vertices.shape)}")
    if points.shape[1] != vertices.shape[1]:
        raise ValueError(
            f"points: expected width D = {vertices.shape[1]} to match vertices {tuple(vertices.shape)}, "
            f"got shape {tuple(points.shape)}"
        )
    _checks.check_same_device(points=points, vertices=vertices)
    # one aminmax pass per input: the NaN/Inf check and the scale
    amax = max(scaling.max_abs("points", points), scaling.max_abs("vertices", vertices))
    if chunk_size is not None:
        _checks.check_int("chunk_size", chunk_size, low=1)
    dtype = torch.promote_types(points.dtype, vertices.dtype)
    if dtype in (torch.float16, torch.bfloat16):
        dtype = torch.float32
    return points.to(dtype), vertices.to(dtype), amax


def _assign(points, vertices, segments: bool, chunk_size, backend: str):
    """(index, t, distance_sq) of the validated op, exact at any scale (see scaling.py)."""
    points, vertices, amax = _validate(points, vertices, chunk_size)
    _checks.check_choice("backend", backend, ["auto"] + OP.names())
    e = math.frexp(amax)[1]
    if scaling.in_window(e, reference.compute_dtype(points.dtype)):
        e = 0
    return torch.ops.latentfast.segment_assign(points, vertices, segments, chunk_size, backend, e)


def segment_assign(points, vertices, *, chunk_size: Optional[int] = None, backend: str = "auto") -> SegmentAssignment:
    """Exact nearest segment of the polyline ``vertices`` for every point.

    points: (N, D) float tensor (or array); vertices: (M, D), segment j joins rows j and j+1.
    Returns :class:`SegmentAssignment` (index, t, distance_sq), t/distance in the promoted input dtype
    (float16/bfloat16 are computed and returned in float32).  Equal to a float64 brute force over all M-1
    segments: the same segment, or a float64-exact tie, resolved to the lowest index; at any scale (inputs of
    very large or very small magnitude are rescaled exactly by a power of two, see ``scaling.py``), with
    distance_sq inf only where the true squared distance overflows the output dtype.
    Gradients: distance_sq w.r.t. points and vertices; t w.r.t. both as well (dt/dx = d / |d|^2 inside the
    segment, 0 where t is clamped to 0 or 1 or the segment has zero length).
    Memory: (chunk_size x M) per chunk, never N x M x D.  Raises ValueError/TypeError on bad shapes, dtypes,
    NaN/Inf.  ``backend``: "auto" | "triton" | "native" | "reference" (see ``python -m latentfast.info``).
    """
    index, t, d = _assign(points, vertices, True, chunk_size, backend)
    return SegmentAssignment(index, t, d)


def nearest_point(points, codebook, *, chunk_size: Optional[int] = None, backend: str = "auto") -> PointAssignment:
    """Exact nearest row of ``codebook`` (M, D) for every point (N, D); ties go to the lowest index.

    At any scale, like :func:`segment_assign`; distance_sq (N,) in the promoted dtype (float32 for half inputs).
    """
    index, _, d = _assign(points, codebook, False, chunk_size, backend)
    return PointAssignment(index, d)
