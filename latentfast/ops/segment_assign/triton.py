"""The ``triton`` backend of segment_assign: two fused Triton kernels (CUDA tensors; CPU only in the interpreter).

1. ``_topk_kernel``: a block of BLOCK_N points times a tile of BLOCK_M vertices with ``tl.dot`` (K-loop over
   the width D).  Neighbouring vertex tiles overlap by one vertex (tile t starts at t * (BLOCK_M - 1)), so
   inside a tile <x, c_{j+1}> is just the next column of the same accumulator (``tl.gather``) and
   <x - c_j, c_{j+1} - c_j> needs no second GEMM.  The epilogue computes the clamped projection and the cheap
   squared distance and merges the tile's four smallest into a running top-4 per point held in registers;
   only (N, 4) candidates and their cheap distances reach memory, never the N x M matrix.
2. ``_rescore_kernel``: the 4 candidates of each point re-scored in float64 in one pass over D from the raw
   float32 inputs (differences of float32 numbers are exact in float64), the winner (ties -> lowest index),
   and the certification of reference.py: the 4th smallest cheap distance minus the rounding bound must
   exceed the winner's exact distance.  Rows that fail are redone
   by :func:`reference.nearest` (the same fallback every backend uses).

TF32.  On GPUs ``tl.dot`` may round float32 inputs to TF32 (10 mantissa bits).  The certification bound always
matches the precision used (:func:`bound_factor`), so answers stay exact; what the precision changes is how many
rows fail certification and take the slow fallback.  Plain TF32's rigorous bound is ~60x wider than float32's:
on the FFHQ curve at noise 1 per dimension almost every row would fail.  The default on Ampere+ is therefore
"tf32x3" (three TF32 products per entry, near-float32 accuracy); see :func:`default_precision`.

Inputs the kernels take: float32 points (float16/bfloat16 are promoted to float32 by the public function),
float64 goes to the native/reference backends.  Under ``TRITON_INTERPRET=1`` (tests without a GPU) the
kernels run on CPU tensors with large blocks and no autotuning.
"""
from __future__ import annotations

import functools
import os
from typing import List, Optional, Tuple

import torch

from ..._dispatch import triton_why_not
from . import reference

Tensor = torch.Tensor

#: candidates kept per point by the kernel (fixed: the running top-K is four register tensors)
KERNEL_CANDIDATES = 4


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def why_not(points, vertices, segments, chunk_size) -> List[str]:
    reasons = triton_why_not(points, vertices)
    if reasons:
        return reasons
    if points.dtype != torch.float32 or vertices.dtype != torch.float32:
        reasons.append(f"dtype {points.dtype}/{vertices.dtype}; the triton kernels compute in float32 "
                       "(float64 goes to the native or reference backend)")
    if vertices.shape[0] >= 2 ** 31 - 1:
        reasons.append(f"M = {vertices.shape[0]} vertices; the kernels keep int32 candidate indices")
    return reasons


#: effective input rounding of "tf32x3" (x = hi + lo, both TF32; the dropped lo*lo and the rounding of lo are
#: each <= 2^-20 |x||c| per product, about 3 * 2^-20 in all, below the 2 e + e^2 of e = 2^-19)
TF32X3_EPS = 2.0 ** -19


def bound_factor(dim: int, precision) -> float:
    """Certification factor of the top-k kernel's cheap distances for ``tl.dot`` input precision ``precision``.

    "ieee": :func:`reference.gemm_error_bound` for float32.  "tf32": inputs rounded to TF32 first
    (``reference.TF32_EPS``): rigorous but about 60x wider, so on noisy points most rows fail certification
    and go to the fallback.  "tf32x3": three TF32 products per entry (3 D terms accumulated in float32) with
    near-float32 accuracy.  ``True``/``False`` stand for "tf32"/"ieee".
    """
    if precision is True or precision == "tf32":
        return reference.gemm_error_bound(dim, torch.float32, reference.TF32_EPS)
    if precision == "tf32x3":
        return reference.gemm_error_bound(3 * dim, torch.float32, TF32X3_EPS)
    if precision is False or precision == "ieee":
        return reference.gemm_error_bound(dim, torch.float32)
    raise ValueError(f"precision: expected 'ieee', 'tf32x3' or 'tf32', got {precision!r}")


def underflow_bound(dim: int, precision) -> float:
    """The certification bound's absolute (underflow) term: :func:`reference.gemm_underflow_bound` for float32,
    over the 3 D products of "tf32x3" (TF32 keeps float32's exponent range)."""
    return reference.gemm_underflow_bound(3 * dim if precision == "tf32x3" else dim, torch.float32)


def default_precision(device: torch.device) -> str:
    """"tf32x3" on tensor-core GPUs (Ampere and newer): near-float32 accuracy, so certification rarely fails,
    at a fraction of the cost of "ieee"; plain "tf32" certifies too few noisy points to pay off (see
    bound_factor).  "ieee" elsewhere (and in the interpreter, which computes float32 products anyway)."""
    if device.type == "cuda" and not _interpreting() and torch.cuda.get_device_capability(device) >= (8, 0):
        return "tf32x3"
    return "ieee"


@functools.lru_cache(maxsize=None)
def _kernels():
    """(triton, plain top-k kernel, the one to launch, rescoring kernel); autotuned only on GPU machines."""
    import triton

    from ._triton_kernels import _rescore_kernel, _topk_kernel
    topk = _topk_kernel
    if torch.cuda.is_available() and not _interpreting() and os.environ.get("LATENTFAST_AUTOTUNE", "1") != "0":
        # autotune needs a driver: only on GPU machines
        topk = triton.autotune(configs=[triton.Config(dict(BLOCK_N=bn, BLOCK_M=bm, BLOCK_K=bk), num_warps=w,
                                                      num_stages=st) for bn, bm, bk, w, st in GPU_CONFIGS],
                               key=["M", "D", "SEGMENTS", "PRECISION"])(_topk_kernel)
    return triton, _topk_kernel, topk, _rescore_kernel


#: top-k kernel configurations tried by the autotuner on GPUs: (BLOCK_N, BLOCK_M, BLOCK_K, warps, stages).  The
#: first is used as is when LATENTFAST_AUTOTUNE=0 (H100, N = 10^6, D = 512, M = 1024: the autotuner's choice).
GPU_CONFIGS = [(64, 128, 32, 4, 4), (64, 128, 32, 8, 3), (128, 128, 32, 8, 3), (128, 64, 32, 4, 3),
               (64, 64, 32, 4, 4), (128, 64, 64, 8, 3)]



def _pow2(n: int, lo: int, hi: int) -> int:
    p = lo
    while p < n and p < hi:
        p *= 2
    return p


def candidates_into(points: Tensor, vertices: Tensor, segments: bool, cand_d: Tensor, cand_i: Tensor,
                    *, precision: Optional[str] = None) -> dict:
    """Kernel 1 into preallocated (N, 4) float32 ``cand_d`` and int32 ``cand_i``; returns the vertex constants.

    points (N, D) float32 and vertices (M, D) float32 on the same device (M = 1 with segments: pass the vertex
    twice).  Column k of the outputs is the k-th smallest cheap distance (inf past the number of segments).
    """
    triton, plain, tuned, _ = _kernels()
    n, dim = points.shape
    m = vertices.shape[0]
    s = m - 1 if segments else m
    if precision is None:
        precision = default_precision(points.device)
    bound_factor(dim, precision)  # validates the name
    # the shift: the float32-rounded mean vertex, so that float64 values shifted by it are exact references
    mean32 = vertices.to(torch.float64).mean(0).to(torch.float32)
    c = (vertices.to(torch.float64) - mean32.to(torch.float64)).to(torch.float32).contiguous()
    cc = (c * c).sum(1)
    if segments:
        dv = c[1:] - c[:-1]
        ll = (dv * dv).sum(1).contiguous()
        ad = (c[:-1] * dv).sum(1).contiguous()
        invl = torch.where(ll > 0, 1.0 / torch.where(ll > 0, ll, torch.ones_like(ll)), torch.zeros_like(ll))
    else:
        ll = ad = invl = cc  # unused by the kernel
    consts = dict(mean32=mean32, cmax=float(cc.max().sqrt()) if m else 0.0, precision=precision, s=s)
    if n == 0:
        return consts
    args = (points, mean32, c, cc, ad, ll, invl, cand_d, cand_i, n, m, s, dim,
            points.stride(0), points.stride(1), c.stride(0))
    seg = 1 if segments else 0
    if tuned is not plain:  # GPU: block sizes from autotune
        tuned[lambda meta: (triton.cdiv(n, meta["BLOCK_N"]),)](*args, SEGMENTS=seg, PRECISION=precision)
    elif points.is_cuda and not _interpreting():  # GPU, autotuning switched off
        bn, bm, bk, w, st = GPU_CONFIGS[0]
        plain[(triton.cdiv(n, bn),)](*args, SEGMENTS=seg, PRECISION=precision, BLOCK_N=bn, BLOCK_M=bm,
                                     BLOCK_K=bk, num_warps=w, num_stages=st)
    else:
        # interpreter: few, large programs (its cost grows with the number of programs and loop trips)
        block_n = _pow2(n, 16, 256)
        block_m = _pow2(m, 16, 512)
        block_k = _pow2(dim, 16, 512)
        plain[(triton.cdiv(n, block_n),)](*args, SEGMENTS=seg, PRECISION=precision,
                                          BLOCK_N=block_n, BLOCK_M=block_m, BLOCK_K=block_k)
    return consts


def assign_into(points: Tensor, vertices: Tensor, segments: bool, index: Tensor, t: Tensor, distance_sq: Tensor,
                unsure: Tensor, *, precision: Optional[str] = None, cand: Optional[Tuple[Tensor, Tensor]] = None
                ) -> None:
    """Both kernels into preallocated (N,) outputs: index int64, t / distance_sq float32, unsure bool.

    ``cand`` optionally supplies the (N, 4) float32 / int32 candidate buffers (tests poison them).  Rows with
    ``unsure`` set are not certified; :func:`run` redoes them.  ``precision``: "ieee" | "tf32x3" | "tf32" | None
    (:func:`default_precision`); the certification bound follows it (:func:`bound_factor`).
    """
    triton, _, _, rescore = _kernels()
    if segments and vertices.shape[0] == 1:  # a single point: one zero-length segment, as in the reference
        vertices = vertices.expand(2, -1)
    n, dim = points.shape
    if cand is None:
        cand = (torch.empty(n, KERNEL_CANDIDATES, dtype=torch.float32, device=points.device),
                torch.empty(n, KERNEL_CANDIDATES, dtype=torch.int32, device=points.device))
    cand_d, cand_i = cand
    consts = candidates_into(points, vertices, segments, cand_d, cand_i, precision=precision)
    if n == 0:
        return
    s = consts["s"]
    k = min(KERNEL_CANDIDATES, s)
    if _interpreting() or not points.is_cuda:
        block_r, block_k = _pow2(n, 16, 256), _pow2(dim, 16, 128)
        warps = 4
    else:
        block_r, block_k, warps = 16, 64, 4
    rescore[(triton.cdiv(n, block_r),)](
        points, vertices, consts["mean32"].to(torch.float64), cand_d, cand_i,
        index, t, distance_sq, unsure, n, dim, points.stride(0), points.stride(1), vertices.stride(0),
        vertices.stride(1), bound_factor(dim, consts["precision"]), underflow_bound(dim, consts["precision"]),
        consts["cmax"],
        SEGMENTS=bool(segments), K=k, CERTIFY=k < s, BLOCK_R=block_r, BLOCK_K=block_k, num_warps=warps)


def run(points: Tensor, vertices: Tensor, segments: bool, chunk_size: Optional[int]) -> Tuple[Tensor, Tensor, Tensor]:
    """Exact (index int64 (N,), t float32 (N,), distance_sq float32 (N,)) for validated float32 inputs.

    ``chunk_size`` is ignored: the kernels never hold more than (N, 4) candidates.
    """
    n = points.shape[0]
    dev = points.device
    index = torch.empty(n, dtype=torch.int64, device=dev)
    t = torch.empty(n, dtype=torch.float32, device=dev)
    d = torch.empty(n, dtype=torch.float32, device=dev)
    unsure = torch.empty(n, dtype=torch.bool, device=dev)
    assign_into(points, vertices, segments, index, t, d, unsure)
    if n and bool(unsure.any()):
        rows = unsure.nonzero().squeeze(1)
        ri, rt, rd = reference.nearest(points[rows], vertices, segments=segments)
        index[rows], t[rows], d[rows] = ri, rt, rd
    return index, t, d
