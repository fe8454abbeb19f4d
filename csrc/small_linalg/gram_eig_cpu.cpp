// Batched Gram eigenvalues by cyclic Jacobi, eight matrices per SIMD group; see gram_eig.h.
#include "small_linalg/gram_eig.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace latentfast {
namespace {

constexpr int L = 8;  // matrices per group: one per lane (two AVX2 vectors of doubles)

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define LATENTFAST_GRAM_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define LATENTFAST_GRAM_CLONES
#endif

// One group: lanes [0, n) hold panels base + (g0 + l) * s0; the rest are zero matrices.  A is (k, k, L) scratch,
// upper triangle used.  Returns the sweeps done (max_sweeps + 1 when not converged).
template <typename T>
__attribute__((always_inline)) inline int64_t group_body(const T* base, int64_t s0, int64_t s1, int64_t s2,
                                                         int64_t m, int64_t k, int n, double tol,
                                                         int64_t max_sweeps, double* A, double* out) {
  auto at_ = [&](int64_t i, int64_t j) -> double* { return A + (i * k + j) * L; };  // i <= j
  for (int64_t i = 0; i < k * k * L; ++i) A[i] = 0.0;
  double xr[kGramEigMaxK][L];
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t i = 0; i < k; ++i)
      for (int l = 0; l < L; ++l) xr[i][l] = l < n ? static_cast<double>(base[l * s0 + r * s1 + i * s2]) : 0.0;
    for (int64_t i = 0; i < k; ++i)
      for (int64_t j = i; j < k; ++j) {
        double* a = at_(i, j);
#pragma omp simd
        for (int l = 0; l < L; ++l) a[l] += xr[i][l] * xr[j][l];
      }
  }
  // Scale each lane by a power of two (exact) so that its largest diagonal entry is in [1, 2): no overflow in
  // d^2 + 4 b^2 below, whatever the panels' magnitude; undone on the eigenvalues.
  int ex[L];
  for (int l = 0; l < L; ++l) {
    double mx = 0.0;
    for (int64_t i = 0; i < k; ++i) mx = std::max(mx, at_(i, i)[l]);
    ex[l] = mx > 0.0 && std::isfinite(mx) ? std::ilogb(mx) : 0;
  }
  for (int64_t i = 0; i < k; ++i)
    for (int64_t j = i; j < k; ++j)
      for (int l = 0; l < L; ++l) at_(i, j)[l] = std::ldexp(at_(i, j)[l], -ex[l]);
  int64_t sweep = 0;
  for (;; ++sweep) {
    double off[L], tr[L];
    for (int l = 0; l < L; ++l) off[l] = tr[l] = 0.0;
    for (int64_t p = 0; p < k; ++p) {
      const double* d = at_(p, p);
#pragma omp simd
      for (int l = 0; l < L; ++l) tr[l] += std::abs(d[l]);
      for (int64_t q = p + 1; q < k; ++q) {
        const double* a = at_(p, q);
#pragma omp simd
        for (int l = 0; l < L; ++l) off[l] += a[l] * a[l];
      }
    }
    bool done = true;
    for (int l = 0; l < L; ++l) done = done && (2.0 * off[l] <= (tol * tr[l]) * (tol * tr[l]));
    if (done) break;
    if (sweep == max_sweeps) {
      ++sweep;
      break;
    }
    for (int64_t p = 0; p < k - 1; ++p)
      for (int64_t q = p + 1; q < k; ++q) {
        double* app = at_(p, p);
        double* aqq = at_(q, q);
        double* apq = at_(p, q);
        double c[L], s[L];
#pragma omp simd
        for (int l = 0; l < L; ++l) {
          const double b = apq[l];
          // entries below 1e-150 of the (scaled, ~1) diagonal are zero at double precision: no rotation
          const bool rot = std::abs(b) > 1e-150;
          const double d = aqq[l] - app[l];
          // t = tan of the rotation, the root of t^2 + (d / b) t - 1 = 0 of smaller magnitude (Rutishauser's
          // form: one division and one square root)
          double t = (2.0 * b) / (std::abs(d) + std::sqrt(d * d + 4.0 * b * b));
          t = d < 0.0 ? -t : t;
          t = rot ? t : 0.0;
          const double cc = 1.0 / std::sqrt(t * t + 1.0);
          c[l] = cc;
          s[l] = t * cc;
          app[l] = app[l] - t * b;
          aqq[l] = aqq[l] + t * b;
          apq[l] = 0.0;
        }
        auto rotate = [&](double* x, double* y) {  // x = a_rp, y = a_rq
#pragma omp simd
          for (int l = 0; l < L; ++l) {
            const double u = x[l], v = y[l];
            x[l] = c[l] * u - s[l] * v;
            y[l] = s[l] * u + c[l] * v;
          }
        };
        for (int64_t r = 0; r < p; ++r) rotate(at_(r, p), at_(r, q));
        for (int64_t r = p + 1; r < q; ++r) rotate(at_(p, r), at_(r, q));
        for (int64_t r = q + 1; r < k; ++r) rotate(at_(p, r), at_(q, r));
      }
  }
  double ev[kGramEigMaxK];
  for (int l = 0; l < n; ++l) {
    for (int64_t i = 0; i < k; ++i) ev[i] = std::ldexp(at_(i, i)[l], ex[l]);
    std::sort(ev, ev + k);
    for (int64_t i = 0; i < k; ++i) out[l * k + i] = ev[i];
  }
  return sweep;
}

LATENTFAST_GRAM_CLONES int64_t group(const float* base, int64_t s0, int64_t s1, int64_t s2, int64_t m, int64_t k,
                                     int n, double tol, int64_t max_sweeps, double* A, double* out) {
  return group_body(base, s0, s1, s2, m, k, n, tol, max_sweeps, A, out);
}

LATENTFAST_GRAM_CLONES int64_t group(const double* base, int64_t s0, int64_t s1, int64_t s2, int64_t m,
                                     int64_t k, int n, double tol, int64_t max_sweeps, double* A, double* out) {
  return group_body(base, s0, s1, s2, m, k, n, tol, max_sweeps, A, out);
}

template <typename T>
int64_t run(const at::Tensor& panels, double tol, int64_t max_sweeps, at::Tensor& out) {
  const int64_t N = panels.size(0), m = panels.size(1), k = panels.size(2);
  const T* P = panels.data_ptr<T>();
  const int64_t s0 = panels.stride(0), s1 = panels.stride(1), s2 = panels.stride(2);
  double* O = out.data_ptr<double>();
  const int64_t groups = (N + L - 1) / L;
  // a group of 10 x 10 problems is ~10 us: 16 groups per task keep the scheduling overhead small
  const int64_t grain = std::max<int64_t>(1, 16 * 100 / std::max<int64_t>(k * k, 1));
  std::vector<int64_t> worst(std::max(1, at::get_num_threads()), 0);
  at::parallel_for(0, groups, grain, [&](int64_t g0, int64_t g1) {
    std::vector<double> A(static_cast<size_t>(k * k * L));
    int64_t w = 0;
    for (int64_t g = g0; g < g1; ++g) {
      const int n = static_cast<int>(std::min<int64_t>(L, N - g * L));
      w = std::max(w, group(P + g * L * s0, s0, s1, s2, m, k, n, tol, max_sweeps, A.data(), O + g * L * k));
    }
    int64_t& slot = worst[at::get_thread_num() % worst.size()];
    slot = std::max(slot, w);
  });
  return *std::max_element(worst.begin(), worst.end());
}

}  // namespace

int64_t gram_eigvalsh_cpu_out(const at::Tensor& panels, double tol, int64_t max_sweeps, at::Tensor& out) {
  TORCH_CHECK(panels.device().is_cpu(), "gram_eigvalsh_cpu_out: panels must be a CPU tensor");
  TORCH_CHECK(panels.dim() == 3, "gram_eigvalsh_cpu_out: panels must be (N, m, k), got ", panels.sizes());
  const int64_t N = panels.size(0), k = panels.size(2);
  TORCH_CHECK(k >= 1 && k <= kGramEigMaxK, "gram_eigvalsh_cpu_out: k must be in [1, ", kGramEigMaxK, "], got ", k);
  TORCH_CHECK(panels.scalar_type() == at::kFloat || panels.scalar_type() == at::kDouble,
              "gram_eigvalsh_cpu_out: panels must be float32 or float64, got ", panels.scalar_type());
  TORCH_CHECK(out.scalar_type() == at::kDouble && out.is_contiguous() && out.dim() == 2 && out.size(0) == N &&
                  out.size(1) == k, "gram_eigvalsh_cpu_out: out must be a contiguous (N, k) float64 tensor");
  TORCH_CHECK(std::isfinite(tol) && tol >= 0.0 && max_sweeps >= 0,
              "gram_eigvalsh_cpu_out: tol must be finite and >= 0, max_sweeps >= 0");
  if (N == 0) return 0;
  if (panels.scalar_type() == at::kFloat) return run<float>(panels, tol, max_sweeps, out);
  return run<double>(panels, tol, max_sweeps, out);
}

}  // namespace latentfast
