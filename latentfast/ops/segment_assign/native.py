"""The ``native`` backend of segment_assign: the C++ kernel in csrc/segment_assign (CPU, float32/float64).

The kernel does the reference's GEMM + cheap distances + exact re-scoring + certification in one OpenMP pass
per block of points and flags the rows it cannot certify; those rows are redone here with
:func:`reference.nearest` (the same fallback the reference itself uses), so the answer is always the float64
brute force's.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch

from ..._dispatch import native_module, native_why_not
from . import reference

Tensor = torch.Tensor

#: points per GEMM block: large enough for an efficient GEMM, small enough that the (rows x M) block output
#: stays within the last-level cache for M ~ 1000 (measured in benchmarks/bench_segment.py).
DEFAULT_BLOCK_ROWS = 512


def why_not(points, vertices, segments, chunk_size) -> List[str]:
    reasons = native_why_not()
    if reasons:
        return reasons
    if points.device.type != "cpu":
        reasons.append(f"tensor on {points.device}; the native kernel runs on CPU tensors")
    if points.dtype not in (torch.float32, torch.float64):
        reasons.append(f"dtype {points.dtype}; the native kernel takes float32 or float64")
    elif vertices.dtype != points.dtype:
        reasons.append(f"points dtype {points.dtype} differs from vertices dtype {vertices.dtype}")
    return reasons


def assign_into(points: Tensor, vertices: Tensor, segments: bool, index: Tensor, t: Tensor, distance_sq: Tensor,
                unsure: Tensor, *, block_rows: int = DEFAULT_BLOCK_ROWS,
                num_candidates: int = reference.NUM_CANDIDATES) -> None:
    """Run the kernel into preallocated (N,) outputs: index int64, t and distance_sq in points' dtype, unsure bool.

    Rows with ``unsure`` set hold a candidate answer that is not certified; :func:`run` redoes them.
    Raises RuntimeError (from the kernel's checks) on wrong shapes/dtypes/devices of any argument.
    """
    _C = native_module()
    if _C is None:
        raise RuntimeError("; ".join(native_why_not()))
    cdt = reference.compute_dtype(points.dtype)
    bound_factor = reference.gemm_error_bound(points.shape[1], cdt)
    bound_abs = reference.gemm_underflow_bound(points.shape[1], cdt)
    _C.segment_assign_cpu_out(points, vertices, bool(segments), float(bound_factor), float(bound_abs),
                              int(block_rows), int(num_candidates), index, t, distance_sq, unsure)


def run(points: Tensor, vertices: Tensor, segments: bool, chunk_size: Optional[int]) -> Tuple[Tensor, Tensor, Tensor]:
    """Exact (index int64 (N,), t (N,), distance_sq (N,)) for validated CPU float32/float64 inputs.

    ``chunk_size`` (rows per GEMM block) defaults to :data:`DEFAULT_BLOCK_ROWS`.
    """
    n = points.shape[0]
    index = torch.empty(n, dtype=torch.int64)
    t = torch.empty(n, dtype=points.dtype)
    d = torch.empty(n, dtype=points.dtype)
    unsure = torch.empty(n, dtype=torch.bool)
    assign_into(points, vertices, segments, index, t, d, unsure, block_rows=chunk_size or DEFAULT_BLOCK_ROWS)
    if n and bool(unsure.any()):
        rows = unsure.nonzero().squeeze(1)
        ri, rt, rd = reference.nearest(points[rows], vertices, segments=segments)
        index[rows], t[rows], d[rows] = ri, rt, rd
    return index, t, d
