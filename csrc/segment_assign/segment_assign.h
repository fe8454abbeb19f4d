// Nearest segment of a polyline (or nearest row of a codebook): native CPU kernel.
//
// The Python side (latentfast/ops/segment_assign/native.py) validates the inputs, allocates the outputs, and
// redoes the rows this kernel flags as uncertain with the pure-PyTorch reference.  The math and the
// certification argument are those of latentfast/ops/segment_assign/reference.py:
//
//   * points and vertices are shifted by the mean vertex (float64), then rounded to the compute type
//     (float32 for float32 input, float64 for float64 input);
//   * per block of points, ONE ATen GEMM  G = X~ C~^T  (block_rows x M);
//   * one OpenMP pass over the rows of the block turns each G row into the cheap expanded distances
//     |x - a|^2 - 2 t <x - a, d> + t^2 |d|^2  (t clamped to [0, 1]), 64 segments at a time (vectorised; an
//     AVX2 clone where the CPU has it), and scans a chunk for the K smallest only when its minimum beats the
//     current K-th;
//   * the K candidates are re-scored directly in float64 from the raw inputs (x - a, clamp, |residual|^2;
//     exact differences for float32 inputs); ties -> lowest index;
//   * a row is certified when the K-th smallest cheap distance minus the rounding bound
//     bound_factor * (|x~| + max_j |c~_j|)^2 + bound_abs still exceeds the winner's exact distance (every non-candidate's
//     exact distance is then larger).  Otherwise a second pass re-scores exactly every segment the bound does
//     not rule out (finite cheap distance - bound > the best exact distance so far), which gives the brute
//     force's answer; only rows with NaN cheap distances (vertex mode, overflow) or no finite exact distance
//     keep unsure[i] = true, and the caller redoes them.
//
// Memory: block_rows x (D + M) of the compute type plus per-thread row buffers; never N x M.
#pragma once

#include <ATen/ATen.h>

#include "common/topk.h"  // kMaxCandidates

namespace latentfast {

// points:        (N, D) float32 or float64, any strides.
// vertices:      (M, D) same dtype as points, M >= 1; segment j joins rows j and j+1 (when segments is true).
// segments:      true -> nearest of the S = M - 1 segments (M = 1 is one zero-length segment);
//                false -> nearest of the S = M vertices (t is then 0).
// bound_factor:  reference.gemm_error_bound(D, compute dtype), the relative rounding bound of the cheap formula.
// bound_abs:     reference.gemm_underflow_bound(D, compute dtype), its absolute (underflow) term.
// block_rows:    points per GEMM block (>= 1).
// num_candidates:K in [1, kMaxCandidates]; min(K, S) candidates are re-scored.
// index_out:     (N,) int64, contiguous          -> nearest segment / vertex
// t_out:         (N,) dtype of points, contiguous -> clamped projection parameter
// distance_out:  (N,) dtype of points, contiguous -> squared distance (computed in float64, then rounded)
// unsure_out:    (N,) bool, contiguous            -> true where the caller must redo the row
// Every element of the four outputs is written.  Raises (c10::Error -> RuntimeError) on bad arguments.
void segment_assign_cpu_out(const at::Tensor& points, const at::Tensor& vertices, bool segments,
                            double bound_factor, double bound_abs, int64_t block_rows, int64_t num_candidates,
                            at::Tensor& index_out, at::Tensor& t_out, at::Tensor& distance_out,
                            at::Tensor& unsure_out);

}  // namespace latentfast
