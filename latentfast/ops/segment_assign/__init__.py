"""Nearest segment of a polyline (and nearest point of a codebook): public functions and dispatch.

Backends, asked in order: ``triton`` (CUDA tensors), ``native`` (the C++ extension, CPU), ``reference``
(pure PyTorch, any device).  All of them return the exact answer of a float64 brute force; see
``reference.py`` for the math and the certification that makes the cheap GEMM formula exact.
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

import torch

from ... import _checks
from ..._dispatch import Backend, Op, register, triton_auto_why_not
from . import native as _native
from . import reference
from . import triton as _triton

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
                       backend: str) -> Tuple[Tensor, Tensor, Tensor]:
    index, t, d = OP(points, vertices, segments, chunk_size, backend=backend)
    return index, t, d


@_segment_assign_op.register_fake
def _segment_assign_fake(points, vertices, segments, chunk_size, backend):
    n = points.shape[0]
    return (points.new_empty((n,), dtype=torch.int64), points.new_empty((n,)), points.new_empty((n,)))


def _setup_context(ctx, inputs, output):
    points, vertices, segments, _, _ = inputs
    index, t, _ = output
    ctx.segments = segments
    ctx.save_for_backward(points, vertices, index, t)


def _backward(ctx, grad_index, grad_t, grad_d):
    """d distance_sq / d x = 2 (x - p) with p the nearest point; by the envelope theorem (t is optimal for the
    segment) d / d c_j = -2 (1 - t)(x - p) and d / d c_{j+1} = -2 t (x - p).  index and t carry no gradient."""
    points, vertices, index, t = ctx.saved_tensors
    if grad_d is None:
        return None, None, None, None, None
    m = vertices.shape[0]
    a = vertices[index]
    if ctx.segments:
        nxt = (index + 1).clamp_max(m - 1)  # M = 1: the zero-length segment (t = 0)
        nearest = a + t.unsqueeze(1) * (vertices[nxt] - a)
    else:
        nearest = a
    g = 2.0 * grad_d.unsqueeze(1) * (points - nearest)
    grad_points = g if ctx.needs_input_grad[0] else None
    grad_vertices = None
    if ctx.needs_input_grad[1]:
        grad_vertices = torch.zeros_like(vertices)
        if ctx.segments:
            grad_vertices.index_add_(0, index, -(1.0 - t).unsqueeze(1) * g)
            grad_vertices.index_add_(0, nxt, -t.unsqueeze(1) * g)
        else:
            grad_vertices.index_add_(0, index, -g)
    return grad_points, grad_vertices, None, None, None


_segment_assign_op.register_autograd(_backward, setup_context=_setup_context)


def _validate(points, vertices, chunk_size):
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
    _checks.check_finite("points", points)
    _checks.check_finite("vertices", vertices)
    if chunk_size is not None:
        _checks.check_int("chunk_size", chunk_size, low=1)
    dtype = torch.promote_types(points.dtype, vertices.dtype)
    if dtype in (torch.float16, torch.bfloat16):
        dtype = torch.float32
    return points.to(dtype), vertices.to(dtype)


def segment_assign(points, vertices, *, chunk_size: Optional[int] = None, backend: str = "auto") -> SegmentAssignment:
    """Exact nearest segment of the polyline ``vertices`` for every point.

    points: (N, D) float tensor (or array); vertices: (M, D), segment j joins rows j and j+1.
    Returns :class:`SegmentAssignment` (index, t, distance_sq), t/distance in the promoted input dtype
    (float16/bfloat16 are computed and returned in float32).  Equal to a float64 brute force over all M-1
    segments: the same segment, or a float64-exact tie, resolved to the lowest index.
    Memory: (chunk_size x M) per chunk, never N x M x D.  Raises ValueError/TypeError on bad shapes, dtypes,
    NaN/Inf.  ``backend``: "auto" | "triton" | "native" | "reference" (see ``python -m latentfast.info``).
    """
    points, vertices = _validate(points, vertices, chunk_size)
    _checks.check_choice("backend", backend, ["auto"] + OP.names())
    index, t, d = torch.ops.latentfast.segment_assign(points, vertices, True, chunk_size, backend)
    return SegmentAssignment(index, t, d)


def nearest_point(points, codebook, *, chunk_size: Optional[int] = None, backend: str = "auto") -> PointAssignment:
    """Exact nearest row of ``codebook`` (M, D) for every point (N, D); ties go to the lowest index."""
    points, codebook = _validate(points, codebook, chunk_size)
    _checks.check_choice("backend", backend, ["auto"] + OP.names())
    index, _, d = torch.ops.latentfast.segment_assign(points, codebook, False, chunk_size, backend)
    return PointAssignment(index, d)
