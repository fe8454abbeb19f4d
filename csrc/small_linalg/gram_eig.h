// Eigenvalues of the Gram matrices M^T M of a batch of small panels M (m x k, k <= 32), float64, on CPU.
//
// Cyclic two-sided Jacobi on the k x k symmetric Gram matrix (formed in float64 from the panel's entries).
// Eight matrices run in lockstep, one per SIMD lane (each with its own rotations), so every step of the sweep is
// one vector operation over the eight; groups of eight are spread over OpenMP threads.  A group stops when
// every lane's off-diagonal norm is at most tol * trace (Weyl: each eigenvalue is then within that of the
// exact one) or after max_sweeps sweeps.  Used for the cosines (and sines) of principal angles, where LAPACK's
// per-matrix call overhead was the whole cost.
#pragma once

#include <ATen/ATen.h>

namespace latentfast {

constexpr int64_t kGramEigMaxK = 32;

// panels: (N, m, k) float32 or float64, any strides, 1 <= k <= kGramEigMaxK.
// out:    (N, k) float64, contiguous -> eigenvalues of panels[i]^T panels[i], ascending (not clamped).
// Returns the largest number of sweeps any group needed (max_sweeps + 1 when some group did not converge).
int64_t gram_eigvalsh_cpu_out(const at::Tensor& panels, double tol, int64_t max_sweeps, at::Tensor& out);

}  // namespace latentfast
