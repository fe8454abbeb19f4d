// One SFVQ training step on CPU; see sfvq_step.h for the contract and the arithmetic it reproduces.
#include "sfvq_step/sfvq_step.h"
#include "common/topk.h"

#include <ATen/Parallel.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <type_traits>
#include <cmath>
#include <limits>
#include <vector>

namespace latentfast {
namespace {

constexpr int64_t kBlockRows = 512;  // rows per GEMM block: the (rows x M) block stays in the last-level cache
constexpr int64_t kChunk = 64;       // dithered points per chunk of the cheap-distance scan

// Adam constants in the parameter dtype, as torch's fused CPU kernel rounds them.
template <typename T>
struct AdamConsts {
  T w, coeff;         // lerp weight 1 - beta1; the FMA's coefficient (w, or w - 1 when w >= 0.5)
  bool small;         // w < 0.5: lerp from exp_avg, else from the gradient
  T beta2, c2, neg_step, bc2s, eps;
  int64_t tail_start; // flat index where torch's vector loop ends and its scalar tail (no FMA) begins
};

// torch's vector body for one element: lerp as one FMA, then the second moment, denominator and step.
template <typename T>
__attribute__((always_inline)) inline void adam_vec(T& p, T& m, T& v, T g, const AdamConsts<T>& k) {
  const T base = k.small ? m : g;
  const T mq = std::fma(k.coeff, g - m, base);
  const T vq = std::fma(k.c2 * g, g, v * k.beta2);  // torch's build contracts v b2 + (c2 g) g to this FMA
  m = mq;
  v = vq;
  const T den = std::sqrt(vq) / k.bc2s + k.eps;
  p = p + k.neg_step * mq / den;
}

// torch's scalar tail for one element (lerp without FMA).
template <typename T>
inline void adam_tail(T& p, T& m, T& v, T g, const AdamConsts<T>& k) {
  const T mq = k.small ? m + k.w * (g - m) : g - (g - m) * (T(1) - k.w);
  const T vq = v * k.beta2 + k.c2 * g * g;
  m = mq;
  v = vq;
  const T den = std::sqrt(vq) / k.bc2s + k.eps;
  p = p + k.neg_step * mq / den;
}

// One row of D elements starting at flat index e0; g == nullptr means a zero gradient (the common row).
template <typename T>
__attribute__((always_inline)) inline void adam_row_body(T* p, T* m, T* v, const T* g, int64_t D, int64_t e0,
                                                         const AdamConsts<T>& k) {
  const int64_t qt = std::clamp<int64_t>(k.tail_start - e0, 0, D);
  if (g) {
#pragma omp simd
    for (int64_t q = 0; q < qt; ++q) adam_vec(p[q], m[q], v[q], g[q], k);
    for (int64_t q = qt; q < D; ++q) adam_tail(p[q], m[q], v[q], g[q], k);
  } else {
#pragma omp simd
    for (int64_t q = 0; q < qt; ++q) adam_vec(p[q], m[q], v[q], T(0), k);
    for (int64_t q = qt; q < D; ++q) adam_tail(p[q], m[q], v[q], T(0), k);
  }
}

#if defined(__x86_64__) && defined(__GNUC__)
#define LATENTFAST_HAVE_FMA_CLONE 1
__attribute__((target("avx2,fma"))) void adam_row_fma(float* p, float* m, float* v, const float* g, int64_t D,
                                                       int64_t e0, const AdamConsts<float>& k) {
  adam_row_body(p, m, v, g, D, e0, k);
}
__attribute__((target("avx2,fma"))) void adam_row_fma(double* p, double* m, double* v, const double* g,
                                                       int64_t D, int64_t e0, const AdamConsts<double>& k) {
  adam_row_body(p, m, v, g, D, e0, k);
}
#endif

template <typename T>
void adam_row(T* p, T* m, T* v, const T* g, int64_t D, int64_t e0, const AdamConsts<T>& k, bool fma_isa) {
#ifdef LATENTFAST_HAVE_FMA_CLONE
  if (fma_isa) return adam_row_fma(p, m, v, g, D, e0, k);
#endif
  adam_row_body(p, m, v, g, D, e0, k);  // std::fma stays exact without the ISA (a library call)
}

bool cpu_has_fma() {
#ifdef LATENTFAST_HAVE_FMA_CLONE
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
#else
  return false;
#endif
}

// --- the cheap side of the assignment (its rounding only moves candidates within the certified bound, never
// the exact answer).  Bodies are compiled twice like the Adam row: baseline ISA and an AVX2 clone.

// mu += every vertex row in float64 (mu zeroed by the caller).
template <typename T>
__attribute__((always_inline)) inline void vertex_sum_body(const T* V, int64_t M, int64_t D, double* mu) {
  for (int64_t j = 0; j < M; ++j) {
    const T* r = V + j * D;
#pragma omp simd
    for (int64_t q = 0; q < D; ++q) mu[q] += static_cast<double>(r[q]);
  }
}

// Rows j0..j1 of the dithered points p_j = a + lam_j (b - a) (elementwise IEEE, no contraction: the very values
// of dithered()), shifted and rounded, c~_j = round(p_j - mu), into C; |c~_j|^2 in float64 and in T.
template <typename T>
__attribute__((always_inline)) inline void shifted_dithered_body(const T* V, const T* lam, const double* mu,
                                                                 int64_t j0, int64_t j1, int64_t D, T* C,
                                                                 T* cc, double* cn) {
  for (int64_t j = j0; j < j1; ++j) {
    const T* a = V + j * D;
    const T* b = a + D;
    const T l = lam[j];
    T* cj = C + j * D;
    double s = 0.0;
#pragma omp simd reduction(+ : s)
    for (int64_t q = 0; q < D; ++q) {
      const T p = a[q] + l * (b[q] - a[q]);
      const T r = static_cast<T>(static_cast<double>(p) - mu[q]);
      cj[q] = r;
      s += static_cast<double>(r) * static_cast<double>(r);
    }
    cc[j] = static_cast<T>(s);
    cn[j] = s;
  }
}

// One contiguous row of x shifted by mu into o; returns {|x - mu|^2 in float64, |o|^2}.
template <typename T>
__attribute__((always_inline)) inline void shifted_row_body(const T* p, const double* mu, int64_t D, T* o,
                                                            double* s64_out, double* sc_out) {
  double s64 = 0.0, sc = 0.0;
#pragma omp simd reduction(+ : s64, sc)
  for (int64_t q = 0; q < D; ++q) {
    const double d = static_cast<double>(p[q]) - mu[q];
    s64 += d * d;
    const T r = static_cast<T>(d);
    o[q] = r;
    sc += static_cast<double>(r) * static_cast<double>(r);
  }
  *s64_out = s64;
  *sc_out = sc;
}

#define LATENTFAST_CHEAP_CLONES(T)                                                                            \
  __attribute__((target("avx2,fma"))) void vertex_sum_avx2(const T* V, int64_t M, int64_t D, double* mu) {   \
    vertex_sum_body(V, M, D, mu);                                                                             \
  }                                                                                                           \
  __attribute__((target("avx2,fma"))) void shifted_dithered_avx2(const T* V, const T* lam, const double* mu, \
                                                                 int64_t j0, int64_t j1, int64_t D, T* C,     \
                                                                 T* cc, double* cn) {                         \
    shifted_dithered_body(V, lam, mu, j0, j1, D, C, cc, cn);                                                  \
  }                                                                                                           \
  __attribute__((target("avx2,fma"))) void shifted_row_avx2(const T* p, const double* mu, int64_t D, T* o,   \
                                                            double* s64, double* sc) {                        \
    shifted_row_body(p, mu, D, o, s64, sc);                                                                   \
  }
#ifdef LATENTFAST_HAVE_FMA_CLONE
LATENTFAST_CHEAP_CLONES(float)
LATENTFAST_CHEAP_CLONES(double)
#endif
#undef LATENTFAST_CHEAP_CLONES

// --- the cheap distances' GEMM for few dithered points.  MKL's sgemm of 64 x 512 x S took 27-97 us for
// S = 3..63 on this machine (6-42 GFLOP/s), this register-blocked loop 6-83 us; at S = 127 the two were even
// (and the steps of the M = 128 stage no faster), beyond it MKL wins.  Its rounding (FMA, another summation
// order) is what gemm_error_bound covers: any order.
constexpr int64_t kSmallGemmPoints = 64;

#ifdef LATENTFAST_HAVE_FMA_CLONE
__attribute__((target("avx2,fma"))) inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}

// The R x P block of dot products of rows X[0..R) with points C[0..P) (contiguous rows of D) into G (row
// stride gs): R x P accumulators of 8 lanes (4 x 2 uses 8 of the 16 registers, with 4 + 2 loads per 8 FMAs),
// the D % 8 tail in scalar.
template <int R, int P>
__attribute__((target("avx2,fma"))) inline void dot_block(const float* X, const float* C, float* G, int64_t D,
                                                          int64_t gs) {
  __m256 acc[R][P];
  for (int r = 0; r < R; ++r)
    for (int p = 0; p < P; ++p) acc[r][p] = _mm256_setzero_ps();
  int64_t q = 0;
  for (; q + 8 <= D; q += 8) {
    __m256 c[P];
    for (int p = 0; p < P; ++p) c[p] = _mm256_loadu_ps(C + p * D + q);
    for (int r = 0; r < R; ++r) {
      const __m256 x = _mm256_loadu_ps(X + r * D + q);
      for (int p = 0; p < P; ++p) acc[r][p] = _mm256_fmadd_ps(x, c[p], acc[r][p]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int p = 0; p < P; ++p) {
      float s = hsum(acc[r][p]);
      for (int64_t t = q; t < D; ++t) s += X[r * D + t] * C[p * D + t];
      G[r * gs + p] = s;
    }
}

// G (n x S, row stride gs) = X (n x D) . C (S x D)^T in float, contiguous rows: 4 x 2 blocks, then the edges.
__attribute__((target("avx2,fma"))) void small_gemm_nt(const float* X, const float* C, float* G, int64_t n,
                                                       int64_t S, int64_t D, int64_t gs) {
  int64_t r = 0;
  for (; r + 4 <= n; r += 4) {
    int64_t j = 0;
    for (; j + 2 <= S; j += 2) dot_block<4, 2>(X + r * D, C + j * D, G + r * gs + j, D, gs);
    if (j < S) dot_block<4, 1>(X + r * D, C + j * D, G + r * gs + j, D, gs);
  }
  for (; r < n; ++r) {
    int64_t j = 0;
    for (; j + 2 <= S; j += 2) dot_block<1, 2>(X + r * D, C + j * D, G + r * gs + j, D, gs);
    if (j < S) dot_block<1, 1>(X + r * D, C + j * D, G + r * gs + j, D, gs);
  }
}
#endif

template <typename T>
void vertex_sum(const T* V, int64_t M, int64_t D, double* mu, bool avx2) {
#ifdef LATENTFAST_HAVE_FMA_CLONE
  if (avx2) return vertex_sum_avx2(V, M, D, mu);
#endif
  vertex_sum_body(V, M, D, mu);
}

template <typename T>
void shifted_dithered(const T* V, const T* lam, const double* mu, int64_t j0, int64_t j1, int64_t D, T* C,
                      T* cc, double* cn, bool avx2) {
#ifdef LATENTFAST_HAVE_FMA_CLONE
  if (avx2) return shifted_dithered_avx2(V, lam, mu, j0, j1, D, C, cc, cn);
#endif
  shifted_dithered_body(V, lam, mu, j0, j1, D, C, cc, cn);
}

template <typename T>
void shifted_row(const T* p, const double* mu, int64_t D, T* o, double* s64, double* sc, bool avx2) {
#ifdef LATENTFAST_HAVE_FMA_CLONE
  if (avx2) return shifted_row_avx2(p, mu, D, o, s64, sc);
#endif
  shifted_row_body(p, mu, D, o, s64, sc);
}

template <typename T>
inline double sq_dist(const double* x64, const T* p, int64_t D) {
  double s = 0.0;
#pragma omp simd reduction(+ : s)
  for (int64_t q = 0; q < D; ++q) {
    const double r = x64[q] - static_cast<double>(p[q]);
    s += r * r;
  }
  return s;
}

// Dithered point j, p_j = a + lam_j (b - a), into p (the values shifted_dithered forms: elementwise IEEE).
template <typename T>
inline void dithered_point(const T* V, const T* lam, int64_t j, int64_t D, T* p) {
  const T* a = V + j * D;
  const T* b = a + D;
  const T l = lam[j];
  for (int64_t q = 0; q < D; ++q) p[q] = a[q] + l * (b[q] - a[q]);
}

// Workspace elements (of T) for S dithered points, B rows of D: C (S x D), the GEMM block (nb x S), the shifted
// rows (nb x D) and the per-point gradient sums (min(B, S) x D), each rounded up to 16 elements.
int64_t round_up(int64_t n) { return (n + 15) / 16 * 16; }
int64_t block_rows(int64_t B) { return std::min(kBlockRows, std::max<int64_t>(B, 1)); }
int64_t workspace_size(int64_t S, int64_t D, int64_t B) {
  const int64_t nb = block_rows(B);
  return round_up(S * D) + round_up(nb * S) + round_up(nb * D) + round_up(std::min(B, S) * D);
}

template <typename T>
std::tuple<double, int64_t, int64_t> run(at::Tensor& vertices, at::Tensor& exp_avg, at::Tensor& exp_avg_sq,
                                const at::Tensor& x, const at::Tensor& lam_t, double step, double lr, double beta1,
                                double beta2, double eps, double bound_factor, int64_t num_candidates,
                                int64_t adam_vec_width, bool adam_fma, at::Tensor& index_out,
                                const at::Tensor& shift, at::Tensor& workspace) {
  const int64_t M = vertices.size(0), D = vertices.size(1), S = M - 1, B = x.size(0);
  T* V = vertices.data_ptr<T>();
  const T* lam = lam_t.data_ptr<T>();
  const T* X = x.data_ptr<T>();
  const int64_t xs0 = x.stride(0), xs1 = x.stride(1);
  int64_t* idx_o = index_out.data_ptr<int64_t>();
  const int64_t K = std::min(num_candidates, S);
  const bool certify = K < S;

  // --- the scratch: the caller's workspace, grown here when short (a Stepper passes the same one every step,
  // so no step allocates or faults in fresh pages)
  const int64_t need = workspace_size(S, D, B);
  if (workspace.numel() < need) workspace.resize_({need});
  T* const work = workspace.data_ptr<T>();
  T* const C = work;
  T* const Gw = C + round_up(S * D);
  const int64_t nb_rows = block_rows(B);
  T* const XS = Gw + round_up(nb_rows * S);
  T* const Gd = XS + round_up(nb_rows * D);

  // --- the shift: the caller's fixed vector, else the float64 mean vertex (any fixed vector keeps the bound
  // valid; one near the mean keeps it small)
  const bool avx2 = cpu_has_fma();
  std::vector<double> mu(D, 0.0);
  if (shift.numel() == D) {
    const double* sp = shift.data_ptr<double>();
    std::copy(sp, sp + D, mu.begin());
  } else {
    vertex_sum(V, M, D, mu.data(), avx2);
    for (int64_t q = 0; q < D; ++q) mu[q] /= static_cast<double>(M);
  }

  // --- dithered points, shifted and rounded for the GEMM, with |c~_j|^2 and max |c~_j|
  std::vector<T> cc(S);
  std::vector<double> cn(S);
  at::parallel_for(0, S, std::max<int64_t>(1, 65536 / std::max<int64_t>(D, 1)), [&](int64_t j0, int64_t j1) {
    shifted_dithered(V, lam, mu.data(), j0, j1, D, C, cc.data(), cn.data(), avx2);
  });
  double cmax2 = 0.0;
  for (int64_t j = 0; j < S; ++j) cmax2 = std::max(cmax2, cn[j]);
  if (!std::isfinite(cmax2)) return {0.0, 2, 0};
  for (int64_t j = 0; j < S; ++j)
    if (!std::isfinite(cn[j])) return {0.0, 2, 0};
  const double cmax = std::sqrt(cmax2);

  // --- nearest dithered point per row: GEMM per block, cheap distances, exact re-scoring, certification
  std::vector<double> best(B);
  std::vector<char> unsure(B, 0);
  bool bad_x = false;
  const auto opts = vertices.options();
  const at::Tensor xs = at::from_blob(XS, {nb_rows, D}, opts);
  const at::Tensor cT = at::from_blob(C, {D, S}, {1, D}, opts);
  std::vector<double> xnorm(nb_rows), xx(nb_rows);
  std::vector<T> xrow(x.stride(1) == 1 ? 0 : D);  // a strided row gathered contiguously
  for (int64_t r0 = 0; r0 < B; r0 += nb_rows) {
    const int64_t nb = std::min(nb_rows, B - r0);
    for (int64_t r = 0; r < nb; ++r) {
      const T* p = X + (r0 + r) * xs0;
      T* o = XS + r * D;
      double s64 = 0.0, sc = 0.0;
      if (xs1 == 1) {
        shifted_row(p, mu.data(), D, o, &s64, &sc, avx2);
      } else {
        for (int64_t q = 0; q < D; ++q) xrow[q] = p[q * xs1];
        shifted_row(xrow.data(), mu.data(), D, o, &s64, &sc, avx2);
      }
      if (!std::isfinite(s64)) bad_x = true;
      xnorm[r] = std::sqrt(s64);
      xx[r] = sc;
    }
    if (bad_x) return {0.0, 1, 0};
    bool gemm_done = false;
#ifdef LATENTFAST_HAVE_FMA_CLONE
    if constexpr (std::is_same_v<T, float>) {
      if (avx2 && S < kSmallGemmPoints) {
        small_gemm_nt(XS, C, Gw, nb, S, D, S);
        gemm_done = true;
      }
    }
#endif
    if (!gemm_done) {
      at::Tensor Gb = at::from_blob(Gw, {nb, S}, opts);
      at::mm_out(Gb, xs.narrow(0, 0, nb), cT);
    }
    const T* Gp = Gw;
    const int64_t gs = S;
    // rows per task: ~64k element operations (the scan of S cheap distances and K exact re-scorings of D)
    const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 16) / std::max<int64_t>(S + K * D, 1));
    at::parallel_for(0, nb, grain, [&](int64_t rb, int64_t re) {
      std::vector<T> dd(kChunk);
      std::vector<double> x64(D);
      std::vector<T> pj(D);
      TopK top;
      for (int64_t r = rb; r < re; ++r) {
        const T* g = Gp + r * gs;
        const T xxr = static_cast<T>(xx[r]);
        top.reset(K);
        bool bad = false;
        for (int64_t j0 = 0; j0 < S; j0 += kChunk) {
          const int64_t j1 = std::min(S, j0 + kChunk);
          T mn = std::numeric_limits<T>::infinity();
          int64_t nan = 0;
#pragma omp simd reduction(min : mn) reduction(+ : nan)
          for (int64_t j = j0; j < j1; ++j) {
            const T v = xxr - T(2) * g[j] + cc[j];
            const T w = v > T(0) ? v : T(0);
            dd[j - j0] = w;
            mn = w < mn ? w : mn;
            nan += w != w;
          }
          top.offer_chunk(dd.data(), j1 - j0, j0, mn, nan, bad);
        }
        const T* xr = X + (r0 + r) * xs0;
        for (int64_t q = 0; q < D; ++q) x64[q] = static_cast<double>(xr[q * xs1]);
        double best_d = std::numeric_limits<double>::infinity();
        int64_t best_j = 0;
        const double e = xnorm[r] + cmax;
        const double bound = bound_factor * e * e;
        auto offer = [&](int64_t j) {  // exact float64 distance of dithered point j; ties to the lowest index
          dithered_point(V, lam, j, D, pj.data());
          const double dj = sq_dist(x64.data(), pj.data(), D);
          if (dj < best_d || (dj == best_d && j < best_j)) {
            best_d = dj;
            best_j = j;
          }
        };
        for (int64_t s = 0; s < K; ++s) {
          if (top.v[s] - bound > best_d) break;  // sorted: no later candidate can win
          offer(top.i[s]);
        }
        if (bad || !std::isfinite(best_d) || (certify && !ruled_out(top.v[K - 1], bound, best_d))) {
          // a near-tie beyond the K candidates (or NaN / overflow in the cheap distances): re-score exactly
          // every dithered point the bound does not rule out against the best exact distance so far.  Every
          // point that can reach the exact minimum passes (a non-finite cheap distance or best rules nothing
          // out), so this is the float64 brute force's answer (ties to the lowest index).
          for (int64_t j = 0; j < S; ++j) {
            const T v = xxr - T(2) * g[j] + cc[j];
            if (!ruled_out(static_cast<double>(v > T(0) ? v : T(0)), bound, best_d)) offer(j);
          }
          unsure[r0 + r] = 1;
        }
        best[r0 + r] = best_d;
        idx_o[r0 + r] = best_j;
      }
    });
  }
  double loss_sum = 0.0;
  for (int64_t i = 0; i < B; ++i) {
    if (!std::isfinite(best[i])) return {0.0, 2, 0};
    loss_sum += best[i];
  }
  const double loss = loss_sum / (static_cast<double>(B) * static_cast<double>(D));

  // --- gradient w.r.t. the dithered points: alpha (p_i - x_i) summed per point in batch order
  const T alpha = static_cast<T>(2.0 / (static_cast<double>(B) * static_cast<double>(D)));
  std::vector<int64_t> slot(S, -1);
  std::vector<int64_t> touched;
  for (int64_t i = 0; i < B; ++i) {
    const int64_t j = idx_o[i];
    if (slot[j] < 0) {
      slot[j] = static_cast<int64_t>(touched.size());
      touched.push_back(j);
    }
  }
  std::fill(Gd, Gd + static_cast<int64_t>(touched.size()) * D, T(0));
  {
    std::vector<T> pjs(static_cast<int64_t>(touched.size()) * D);  // each touched dithered point, formed once
    for (size_t u = 0; u < touched.size(); ++u) dithered_point(V, lam, touched[u], D, pjs.data() + u * D);
    for (int64_t i = 0; i < B; ++i) {
      const int64_t j = idx_o[i];
      const T* pj = pjs.data() + slot[j] * D;
      T* gr = Gd + slot[j] * D;
      const T* xr = X + i * xs0;
      for (int64_t q = 0; q < D; ++q) gr[q] = gr[q] + alpha * (pj[q] - xr[q * xs1]) * T(1);
    }
  }

  // --- Adam over every vertex (dense: every moment decays), the rows with a gradient from the 2 x B sums
  AdamConsts<T> k;
  const double w = 1.0 - beta1;
  k.w = static_cast<T>(w);
  k.small = std::abs(k.w) < T(0.5);
  k.coeff = k.small ? k.w : static_cast<T>(k.w - T(1));
  k.beta2 = static_cast<T>(beta2);
  k.c2 = static_cast<T>(1.0 - beta2);
  const double bc1 = 1.0 - std::pow(beta1, step);
  const double bc2 = 1.0 - std::pow(beta2, step);
  k.neg_step = static_cast<T>(-(lr / bc1));
  k.bc2s = static_cast<T>(std::sqrt(bc2));
  k.eps = static_cast<T>(eps);
  const int64_t numel = M * D;
  // without FMA (torch's DEFAULT build) torch's vector lerp is the tail's arithmetic: every element takes it
  k.tail_start = !adam_fma ? 0 : adam_vec_width > 0 ? numel - numel % adam_vec_width : numel;
  const bool fma_isa = avx2;
  T* Pm = exp_avg.data_ptr<T>();
  T* Pv = exp_avg_sq.data_ptr<T>();
  const int64_t agrain = std::max<int64_t>(1, 32768 / std::max<int64_t>(D, 1));
  at::parallel_for(0, M, agrain, [&](int64_t j0, int64_t j1) {
    std::vector<T> grow(D);
    for (int64_t j = j0; j < j1; ++j) {
      const int64_t sa = j < S ? slot[j] : -1;       // G_j reaches v_j through a = v[:-1]
      const int64_t sb = j > 0 ? slot[j - 1] : -1;   // G_{j-1} reaches v_j through b = v[1:]
      const T* g = nullptr;
      if (sa >= 0 || sb >= 0) {
        const T la = j < S ? lam[j] : T(0), lb = j > 0 ? lam[j - 1] : T(0);
        const T* ga = sa >= 0 ? Gd + sa * D : nullptr;
        const T* gb = sb >= 0 ? Gd + sb * D : nullptr;
        for (int64_t q = 0; q < D; ++q) {
          const T a = ga ? ga[q] : T(0);
          const T b = gb ? gb[q] : T(0);
          grow[q] = (a - a * la) + b * lb;
        }
        g = grow.data();
      }
      adam_row(V + j * D, Pm + j * D, Pv + j * D, g, D, j * D, k, fma_isa);
    }
  });
  int64_t n_unsure = 0;
  for (int64_t i = 0; i < B; ++i) n_unsure += unsure[i];
  return {loss, 0, n_unsure};
}

void check(bool ok, const char* what) { TORCH_CHECK(ok, "sfvq_step_cpu: ", what); }

}  // namespace

std::tuple<double, int64_t, int64_t> sfvq_step_cpu(at::Tensor& vertices, at::Tensor& exp_avg,
                                                   at::Tensor& exp_avg_sq, const at::Tensor& x,
                                                   const at::Tensor& lam, double step, double lr, double beta1,
                                                   double beta2, double eps, double bound_factor,
                                                   int64_t num_candidates, int64_t adam_vec_width, bool adam_fma,
                                                   at::Tensor& index_out, const at::Tensor& shift,
                                                   at::Tensor& workspace) {
  check(vertices.device().is_cpu() && x.device().is_cpu() && lam.device().is_cpu(), "tensors must be on the CPU");
  check(vertices.dim() == 2 && vertices.size(0) >= 2 && vertices.is_contiguous(),
        "vertices must be a contiguous (M, D) tensor with M >= 2");
  const auto dt = vertices.scalar_type();
  check(dt == at::kFloat || dt == at::kDouble, "vertices must be float32 or float64");
  for (const at::Tensor* t : {&exp_avg, &exp_avg_sq})
    check(t->scalar_type() == dt && t->sizes() == vertices.sizes() && t->is_contiguous(),
          "exp_avg / exp_avg_sq must be contiguous and match the vertices");
  check(x.dim() == 2 && x.size(1) == vertices.size(1) && x.scalar_type() == dt,
        "x must be (B, D) with the vertices' D and dtype");
  check(lam.dim() == 1 && lam.size(0) == vertices.size(0) - 1 && lam.is_contiguous() && lam.scalar_type() == dt,
        "lam must be a contiguous (M - 1,) tensor of the vertices' dtype");
  check(index_out.scalar_type() == at::kLong && index_out.dim() == 1 && index_out.size(0) == x.size(0) &&
            index_out.is_contiguous(), "index_out must be a contiguous (B,) int64 tensor");
  check(shift.numel() == 0 || (shift.scalar_type() == at::kDouble && shift.dim() == 1 &&
                               shift.size(0) == vertices.size(1) && shift.is_contiguous()),
        "shift must be empty or a contiguous (D,) float64 tensor");
  check(workspace.scalar_type() == dt && workspace.dim() == 1 && workspace.is_contiguous() &&
            workspace.device().is_cpu(), "workspace must be a contiguous 1-D CPU tensor of the vertices' dtype");
  check(num_candidates >= 1 && num_candidates <= kMaxCandidates, "num_candidates must be in [1, 8]");
  check(step >= 1.0 && std::isfinite(lr) && std::isfinite(eps) && std::isfinite(bound_factor),
        "step >= 1 and finite lr, eps, bound_factor expected");
  if (x.size(0) == 0) return {std::numeric_limits<double>::quiet_NaN(), 0, 0};
  if (dt == at::kFloat)
    return run<float>(vertices, exp_avg, exp_avg_sq, x, lam, step, lr, beta1, beta2, eps, bound_factor,
                      num_candidates, adam_vec_width, adam_fma, index_out, shift, workspace);
  return run<double>(vertices, exp_avg, exp_avg_sq, x, lam, step, lr, beta1, beta2, eps, bound_factor,
                     num_candidates, adam_vec_width, adam_fma, index_out, shift, workspace);
}

}  // namespace latentfast
