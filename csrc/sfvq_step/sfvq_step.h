// One SFVQ training step on CPU in one native call: dithered points, exact nearest dithered point per row,
// MSE loss, its gradient w.r.t. the vertices and the fused-Adam update of every vertex.
//
// The Python side (latentfast/sfvq/_fast_step.py) checks the arguments, increments the optimizer's step
// counter and calls this only for a plain fused torch.optim.Adam (no weight decay, amsgrad, maximize,
// capturable, differentiable; float learning rate) over the one vertex tensor.  The result equals the autograd
// path of latentfast/sfvq/fit.py (train_step) followed by torch.optim.Adam(fused=True).step():
//
//   * dithered point j: a + lam_j (b - a) with a = v_j, b = v_{j+1}, in the vertices' dtype (torch's order);
//   * nearest dithered point: the segment_assign kernel's method in vertex mode (one GEMM of the shifted
//     rows, cheap expanded distances, the K best re-scored in float64, certified by the rigorous rounding bound
//     of reference.gemm_error_bound; a row it cannot certify re-scores every dithered point the bound does not
//     rule out (common/topk.h ruled_out: a non-finite cheap distance rules nothing out) — the float64 brute
//     force's answer at a fraction of its cost);
//   * gradient: g_i = (2 / (B D)) (p_i - x_i), summed per dithered point in batch order, then to the vertices
//     as autograd sums them: grad v_j = (G_j - G_j lam_j) + G_{j-1} lam_{j-1}  (only 2 x B rows non-zero; no
//     dense gradient is formed);
//   * Adam: torch's fused CPU kernel's arithmetic element by element (lerp as an FMA, bias corrections in
//     float64), with the zero-gradient rows specialised.  Every vertex moves each step (its moments decay), so
//     the update is dense; see _fast_step.py for why no exact lazy form exists.
#pragma once

#include <ATen/ATen.h>

namespace latentfast {

// vertices, exp_avg, exp_avg_sq: (M, D) contiguous, same dtype (float32 or float64), M >= 2; updated in place.
// x: (B, D) same dtype, any strides; lam: (M - 1,) same dtype, contiguous.
// step: the optimizer's step count after this step's increment (>= 1).
// bound_factor: reference.gemm_error_bound(D, dtype); num_candidates: K in [1, 8].
// adam_vec_width: elements per vector of torch's CPU kernels (8 floats for AVX2, 16 for AVX-512): torch's fused
//   Adam runs its last numel % width elements through a scalar tail without the FMA; adam_fma: whether torch's
//   vector lerp is an FMA (AVX2/AVX-512 builds) — both only make the result bitwise torch's.
// index_out: (B,) int64 contiguous -> nearest dithered point per row.
// shift: empty, or a contiguous (D,) float64 vector subtracted from rows and dithered points before the GEMM of
//   the cheap distances (any fixed vector keeps the certification rigorous; one near the vertices' mean keeps
//   the bound tight); empty = the float64 mean of this step's vertices.  The result does not depend on it.
// workspace: a contiguous 1-D tensor of the vertices' dtype, grown (resize_) when shorter than the step needs;
//   pass the same one every step (a Stepper does) so that no step allocates and faults in fresh pages.
// Returns {loss, status, brute}: loss = mean squared error over B x D (computed in float64); status 0 = done,
// 1 = x holds NaN/Inf, 2 = the vertices (or lam) hold NaN/Inf or overflow (with status != 0 nothing was
// modified); brute = rows the certification left to the second pass.
std::tuple<double, int64_t, int64_t> sfvq_step_cpu(at::Tensor& vertices, at::Tensor& exp_avg,
                                                   at::Tensor& exp_avg_sq, const at::Tensor& x,
                                                   const at::Tensor& lam, double step, double lr, double beta1,
                                                   double beta2, double eps, double bound_factor,
                                                   int64_t num_candidates, int64_t adam_vec_width, bool adam_fma,
                                                   at::Tensor& index_out, const at::Tensor& shift,
                                                   at::Tensor& workspace);

}  // namespace latentfast
