// Native CPU kernel for the nearest segment; see segment_assign.h for the contract and the math.
#include "segment_assign/segment_assign.h"

#include <ATen/Parallel.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <exception>
#include <limits>
#include <vector>

namespace latentfast {
namespace {

// Per-call constants of the vertex set.  `c` (compute type, centred on the float64 mean vertex) feeds the GEMM
// and the cheap formula; the exact re-scoring reads the raw vertices `v` and converts to float64 on the fly
// (for float32 inputs x - v is then exact; no float64 copy of the vertices is made per call).
template <typename scalar_t, typename cdt>
struct VertexConstants {
  at::Tensor vertices;          // (M, D) contiguous raw vertices (keeps `v` alive)
  const scalar_t* v = nullptr;
  at::Tensor c;                 // (M, D) cdt, centred, contiguous
  std::vector<double> mean;     // (D)
  std::vector<cdt> cc;          // (M) |c~_j|^2
  std::vector<cdt> ad;          // (S) <a, d> in the compute type
  std::vector<cdt> L;           // (S) |d|^2 in the compute type
  std::vector<cdt> invL;        // (S) 1 / L, 0 where L = 0 (then t = 0, as in the reference)
  double cmax = 0.0;            // max_j |c~_j|
};

template <typename scalar_t, typename cdt>
VertexConstants<scalar_t, cdt> prepare(const at::Tensor& vertices, bool segments) {
  VertexConstants<scalar_t, cdt> k;
  k.vertices = vertices.contiguous();
  const int64_t M = vertices.size(0), D = vertices.size(1);
  const scalar_t* v = k.v = k.vertices.template data_ptr<scalar_t>();
  k.mean.assign(D, 0.0);
  double* mean = k.mean.data();
  for (int64_t j = 0; j < M; ++j) {
    const scalar_t* row = v + j * D;
#pragma omp simd
    for (int64_t q = 0; q < D; ++q) mean[q] += static_cast<double>(row[q]);
  }
  for (int64_t q = 0; q < D; ++q) mean[q] /= static_cast<double>(M);
  k.c = at::empty({M, D}, vertices.options().dtype(c10::CppTypeToScalarType<cdt>::value));
  cdt* c = k.c.template data_ptr<cdt>();
  k.cc.assign(M, cdt(0));
  for (int64_t j = 0; j < M; ++j) {
    const scalar_t* row = v + j * D;
    cdt* cj = c + j * D;
    double s = 0.0;
#pragma omp simd reduction(+ : s)
    for (int64_t q = 0; q < D; ++q) {
      const cdt r = static_cast<cdt>(static_cast<double>(row[q]) - mean[q]);
      cj[q] = r;
      s += static_cast<double>(r) * static_cast<double>(r);
    }
    k.cc[j] = static_cast<cdt>(s);
    k.cmax = std::max(k.cmax, std::sqrt(s));
  }
  if (segments) {
    const int64_t S = M - 1;
    k.ad.assign(S, cdt(0));
    k.L.assign(S, cdt(0));
    k.invL.assign(S, cdt(0));
    for (int64_t j = 0; j < S; ++j) {
      const cdt* a = c + j * D;
      const cdt* b = a + D;
      double l = 0.0, ad = 0.0;
#pragma omp simd reduction(+ : l, ad)
      for (int64_t q = 0; q < D; ++q) {
        // cheap-side constants from the rounded vertices, like the reference (c[1:] - c[:-1] in cdt)
        const double d = static_cast<double>(static_cast<cdt>(b[q] - a[q]));
        l += d * d;
        ad += static_cast<double>(a[q]) * d;
      }
      k.L[j] = static_cast<cdt>(l);
      k.ad[j] = static_cast<cdt>(ad);
      // t = p * (1/L) instead of p / L: one more rounding in t only, which changes the cheap distance to
      // second order (the distance is stationary in t at the unclamped optimum) and is covered by the bound.
      k.invL[j] = k.L[j] > cdt(0) ? cdt(1) / k.L[j] : cdt(0);
    }
  }
  return k;
}

// Cheap distances of row segments/vertices [j0, j1) into dd[j0..j1) and their minimum (NaN-free inputs give
// NaN-free outputs; `nan` counts NaNs, which only the vertex path can produce).  The body is one vectorised loop;
// the two overloads below are compiled for AVX2 and for the baseline x86-64 ISA, picked once at load time
// (-ffp-contract=off for the whole file: AVX2 widens the vectors, every value stays what the baseline computes).
template <typename cdt>
__attribute__((always_inline)) inline cdt chunk_distances(const cdt* g, cdt xxr, const cdt* ad, const cdt* L,
                                                          const cdt* invL, const cdt* cc, cdt* dd, int64_t j0,
                                                          int64_t j1, bool segments, int64_t& nan) {
  cdt m = std::numeric_limits<cdt>::infinity();
  int64_t bad = 0;
  if (segments) {
#pragma omp simd reduction(min : m)
    for (int64_t j = j0; j < j1; ++j) {
      const cdt p = g[j + 1] - g[j] - ad[j];  // <x - a, d> from the same GEMM row
      // one select per statement: GCC if-converts these (and vectorises the loop), not a nested min(max())
      cdt t = p * invL[j];
      t = t > cdt(0) ? t : cdt(0);
      t = t < cdt(1) ? t : cdt(1);
      const cdt v = xxr - cdt(2) * g[j] + cc[j] - cdt(2) * t * p + t * t * L[j];
      const cdt w = v > cdt(0) ? v : cdt(0);
      dd[j] = w;
      m = w < m ? w : m;
    }
  } else {
#pragma omp simd reduction(min : m) reduction(+ : bad)
    for (int64_t j = j0; j < j1; ++j) {
      const cdt v = xxr - cdt(2) * g[j] + cc[j];
      const cdt w = std::max(v, cdt(0));
      dd[j] = w;
      m = w < m ? w : m;
      bad += w != w;
    }
  }
  nan = bad;
  return m;
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define LATENTFAST_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define LATENTFAST_CLONES
#endif

LATENTFAST_CLONES float row_chunk(const float* g, float xxr, const float* ad, const float* L, const float* invL,
                                  const float* cc, float* dd, int64_t j0, int64_t j1, bool segments, int64_t& nan) {
  return chunk_distances<float>(g, xxr, ad, L, invL, cc, dd, j0, j1, segments, nan);
}

LATENTFAST_CLONES double row_chunk(const double* g, double xxr, const double* ad, const double* L,
                                   const double* invL, const double* cc, double* dd, int64_t j0, int64_t j1,
                                   bool segments, int64_t& nan) {
  return chunk_distances<double>(g, xxr, ad, L, invL, cc, dd, j0, j1, segments, nan);
}

// segments per chunk of the fused pass: the distances of a chunk are still in L1 when the chunk is scanned
constexpr int64_t kChunk = 64;

template <typename scalar_t, typename cdt>
void run(const at::Tensor& points, const at::Tensor& vertices_in, bool segments, double bound_factor,
         double bound_abs, int64_t block_rows, int64_t num_candidates, at::Tensor& index_out, at::Tensor& t_out,
         at::Tensor& distance_out, at::Tensor& unsure_out) {
  // A single vertex is one zero-length segment (index 0, t 0), as in the reference.
  const at::Tensor vertices = (segments && vertices_in.size(0) == 1)
                                  ? vertices_in.expand({2, vertices_in.size(1)}) : vertices_in;
  const int64_t N = points.size(0), D = points.size(1), M = vertices.size(0);
  const int64_t S = segments ? M - 1 : M;
  const int64_t K = std::min(num_candidates, S);
  const bool certify = K < S;  // with every segment re-scored there is nothing to certify
  const VertexConstants<scalar_t, cdt> k = prepare<scalar_t, cdt>(vertices, segments);

  const scalar_t* P = points.data_ptr<scalar_t>();
  const int64_t ps0 = points.stride(0), ps1 = points.stride(1);
  int64_t* idx_o = index_out.data_ptr<int64_t>();
  scalar_t* t_o = t_out.data_ptr<scalar_t>();
  scalar_t* d_o = distance_out.data_ptr<scalar_t>();
  bool* u_o = unsure_out.data_ptr<bool>();

  const int64_t B0 = std::min(block_rows, std::max<int64_t>(N, 1));
  const int64_t nblocks0 = (N + B0 - 1) / B0;
  const auto copt = points.options().dtype(c10::CppTypeToScalarType<cdt>::value);
  const at::Tensor cT = k.c.t();
  // Parallel over blocks, not within them: each thread centres its block, runs the block's GEMM on its own
  // (ATen/MKL run single-threaded inside a parallel region) and finishes the block, with no barrier until the
  // end.  Dynamic scheduling lets a thread whose core is busy elsewhere (shared machines) fall behind without
  // stalling the others.  Small problems (e.g. SFVQ training batches) stay on one thread: starting a region
  // costs tens of microseconds; they run outside any parallel region, so that the GEMM of their block may still
  // use every core through ATen (inside a region ATen runs single-threaded).
  const int max_threads = std::max(1, at::get_num_threads());
  const int nthreads = (N * M * D < (int64_t(1) << 22)) ? 1 : static_cast<int>(std::min<int64_t>(max_threads, nblocks0));
  // Blocks of at most block_rows, as many as a multiple of the threads (e.g. 2560 rows, 2 threads: 6 blocks of
  // 427, not 5 of 512 of which one thread would do 3): no thread waits a whole block for the other at the end.
  const int64_t want = (nblocks0 + nthreads - 1) / nthreads * nthreads;
  const int64_t B = std::max<int64_t>(1, (N + want - 1) / want);
  const int64_t nblocks = (N + B - 1) / B;  // <= want; every block holds at least one row
  std::exception_ptr error = nullptr;

  // Per-thread buffers: the centred block in the compute type, its GEMM output (the only rows x M buffer), and
  // one row of cheap distances (stays in L1/L2).
  struct ThreadState {
    at::Tensor xs, G;
    std::vector<double> xnorm, xx, x64;
    std::vector<cdt> dist;
    TopK top;
  };
  auto make_state = [&]() {
    ThreadState st;
    st.xs = at::empty({B, D}, copt);
    st.G = at::empty({B, M}, copt);
    st.xnorm.resize(B);
    st.xx.resize(B);
    st.dist.resize(static_cast<size_t>(S));
    st.x64.resize(static_cast<size_t>(D));
    return st;
  };
  auto do_block = [&](ThreadState& st, int64_t blk) {
    at::Tensor& xs = st.xs;
    at::Tensor& G = st.G;
    std::vector<double>& xnorm = st.xnorm;
    std::vector<double>& xx = st.xx;
    std::vector<double>& x64 = st.x64;
    std::vector<cdt>& dist = st.dist;
    TopK& top = st.top;
    const int64_t r0 = blk * B;
    const int64_t nb = std::min(B, N - r0);
    cdt* X = xs.data_ptr<cdt>();
    // centre and round the block; |x~|^2 for the cheap formula, |x - mean| for the bound
    for (int64_t r = 0; r < nb; ++r) {
      const scalar_t* p = P + (r0 + r) * ps0;
      cdt* x = X + r * D;
      double s64 = 0.0, sc = 0.0;
#pragma omp simd reduction(+ : s64, sc)
      for (int64_t q = 0; q < D; ++q) {
        const double v = static_cast<double>(p[q * ps1]) - k.mean[q];
        s64 += v * v;
        x[q] = static_cast<cdt>(v);
        sc += static_cast<double>(x[q]) * static_cast<double>(x[q]);
      }
      xnorm[r] = std::sqrt(s64);
      xx[r] = sc;
    }
    at::Tensor Gb = G.narrow(0, 0, nb);
    at::mm_out(Gb, xs.narrow(0, 0, nb), cT);  // the one GEMM of this block
    const cdt* Gp = Gb.data_ptr<cdt>();
    const int64_t gs = Gb.stride(0);
    for (int64_t r = 0; r < nb; ++r) {
      const cdt* g = Gp + r * gs;
      const cdt xxr = static_cast<cdt>(xx[r]);
      cdt* dd = dist.data();
      // Fused projection, clamp and cheap distance, chunk by chunk (vectorised), each chunk followed by the
      // top-K scan only when its minimum beats the current K-th best: after the first chunks most are skipped.
      // A NaN (overflow) flags the row.
      top.reset(K);
      bool bad = false;
      for (int64_t j0 = 0; j0 < S; j0 += kChunk) {
        const int64_t j1 = std::min(S, j0 + kChunk);
        int64_t nan = 0;
        const cdt m = row_chunk(g, xxr, k.ad.data(), k.L.data(), k.invL.data(), k.cc.data(), dd, j0, j1,
                                segments, nan);
        top.offer_chunk(dd + j0, j1 - j0, j0, m, nan, bad);
      }
      // exact float64 re-scoring of the candidates
      const scalar_t* prow = P + (r0 + r) * ps0;
      for (int64_t q = 0; q < D; ++q) x64[q] = static_cast<double>(prow[q * ps1]);
      double best_d = std::numeric_limits<double>::infinity(), best_t = 0.0;
      int64_t best_j = std::numeric_limits<int64_t>::max();
      const double e = xnorm[r] + k.cmax;
      const double bound = bound_factor * e * e + bound_abs;  // |cheap - exact| <= bound for every segment
      // exact float64 distance (and t) of segment / vertex j to the row: the brute force's operations
      auto exact = [&](int64_t j, double& tj) -> double {
        const scalar_t* a = k.v + j * D;
        double dj = 0.0;
        tj = 0.0;
        if (segments) {
          const scalar_t* b = a + D;
          // p and |d|^2 in one loop with the same operation order: for x on b, p == L exactly and t = 1
          double p = 0.0, Lj = 0.0;
#pragma omp simd reduction(+ : p, Lj)
          for (int64_t q = 0; q < D; ++q) {
            const double dq = static_cast<double>(b[q]) - static_cast<double>(a[q]);
            p += (x64[q] - static_cast<double>(a[q])) * dq;
            Lj += dq * dq;
          }
          tj = Lj > 0.0 ? std::min(1.0, std::max(0.0, p / Lj)) : 0.0;
          // At t = 1 the nearest point is b: measure from b with t = 0, i.e. the very operations segment j+1
          // performs at t = 0, so the exact tie at a shared vertex stays exact and goes to the lower index
          // (as in reference.exact_scores).
          const scalar_t* base = tj == 1.0 ? b : a;
          const double tt = tj == 1.0 ? 0.0 : tj;
#pragma omp simd reduction(+ : dj)
          for (int64_t q = 0; q < D; ++q) {
            const double res = (x64[q] - static_cast<double>(base[q])) -
                               tt * (static_cast<double>(b[q]) - static_cast<double>(a[q]));
            dj += res * res;
          }
        } else {
#pragma omp simd reduction(+ : dj)
          for (int64_t q = 0; q < D; ++q) {
            const double res = x64[q] - static_cast<double>(a[q]);
            dj += res * res;
          }
        }
        return dj;
      };
      auto offer = [&](int64_t j) {
        double tj;
        const double dj = exact(j, tj);
        if (dj < best_d || (dj == best_d && j < best_j)) {
          best_d = dj;
          best_t = tj;
          best_j = j;
        }
      };
      for (int64_t s = 0; s < K; ++s) {
        // Candidates come sorted by cheap distance: once one's cheap distance minus the bound exceeds the best
        // exact distance so far, its exact distance (and every later candidate's) is larger still.  Usually
        // only the first candidate is re-scored.
        if (top.v[s] - bound > best_d) break;
        offer(top.i[s]);
      }
      bool unsure = bad || !std::isfinite(best_d);
      if (certify && !unsure && !ruled_out(top.v[K - 1], bound, best_d)) {
        // Near-ties beyond the K candidates (or an infinite K-th value): re-score exactly every segment the
        // bound does not rule out against the best exact distance so far (which only decreases).  Every segment
        // that can reach the exact minimum passes, so the row's answer is the float64 brute force's (ties to
        // the lowest index).
        for (int64_t j = 0; j < S; ++j)
          if (!ruled_out(dd[j], bound, best_d)) offer(j);
        unsure = !std::isfinite(best_d);
      }
      const int64_t o = r0 + r;
      idx_o[o] = best_j;
      t_o[o] = static_cast<scalar_t>(best_t);
      d_o[o] = static_cast<scalar_t>(best_d);
      u_o[o] = unsure;
    }  // rows of the block
  };

  if (nthreads == 1) {
    // no parallel region: the block's GEMM may use every core through ATen; exceptions propagate as usual
    ThreadState st = make_state();
    for (int64_t blk = 0; blk < nblocks; ++blk) do_block(st, blk);
    return;
  }
#pragma omp parallel num_threads(nthreads)
  {
    // Exceptions must not leave a parallel region (nor skip the loop's barrier): record the first and rethrow.
    ThreadState st;
    bool ready = false;
    try {
      st = make_state();
      ready = true;
    } catch (...) {
#pragma omp critical(latentfast_segment_assign_error)
      if (!error) error = std::current_exception();
    }
#pragma omp for schedule(dynamic, 1)
    for (int64_t blk = 0; blk < nblocks; ++blk) {
      if (!ready) continue;
      try {
        do_block(st, blk);
      } catch (...) {
#pragma omp critical(latentfast_segment_assign_error)
        if (!error) error = std::current_exception();
      }
    }
  }
  if (error) std::rethrow_exception(error);
}

void check_out(const at::Tensor& t, const char* name, at::ScalarType dtype, int64_t n) {
  TORCH_CHECK(t.device().is_cpu(), "segment_assign_cpu_out: ", name, " must be a CPU tensor, got ", t.device());
  TORCH_CHECK(t.scalar_type() == dtype, "segment_assign_cpu_out: ", name, " must have dtype ", dtype,
              ", got ", t.scalar_type());
  TORCH_CHECK(t.dim() == 1 && t.size(0) == n, "segment_assign_cpu_out: ", name, " must have shape (", n,
              ",), got ", t.sizes());
  TORCH_CHECK(t.is_contiguous(), "segment_assign_cpu_out: ", name, " must be contiguous");
}

}  // namespace

void segment_assign_cpu_out(const at::Tensor& points, const at::Tensor& vertices, bool segments,
                            double bound_factor, double bound_abs, int64_t block_rows,
                            int64_t num_candidates, at::Tensor& index_out, at::Tensor& t_out, at::Tensor& distance_out,
                            at::Tensor& unsure_out) {
  TORCH_CHECK(points.device().is_cpu() && vertices.device().is_cpu(),
              "segment_assign_cpu_out: points and vertices must be CPU tensors, got ", points.device(), " and ",
              vertices.device());
  TORCH_CHECK(points.dim() == 2, "segment_assign_cpu_out: points must have shape (N, D), got ", points.sizes());
  TORCH_CHECK(vertices.dim() == 2, "segment_assign_cpu_out: vertices must have shape (M, D), got ",
              vertices.sizes());
  TORCH_CHECK(points.size(1) == vertices.size(1), "segment_assign_cpu_out: points width ", points.size(1),
              " does not match vertices width ", vertices.size(1));
  TORCH_CHECK(vertices.size(0) >= 1, "segment_assign_cpu_out: vertices must have at least one row");
  TORCH_CHECK(points.scalar_type() == vertices.scalar_type(),
              "segment_assign_cpu_out: points and vertices must have the same dtype, got ", points.scalar_type(),
              " and ", vertices.scalar_type());
  TORCH_CHECK(points.scalar_type() == at::kFloat || points.scalar_type() == at::kDouble,
              "segment_assign_cpu_out: dtype must be float32 or float64, got ", points.scalar_type());
  TORCH_CHECK(block_rows >= 1, "segment_assign_cpu_out: block_rows must be >= 1, got ", block_rows);
  TORCH_CHECK(num_candidates >= 1 && num_candidates <= kMaxCandidates,
              "segment_assign_cpu_out: num_candidates must be in [1, ", kMaxCandidates, "], got ", num_candidates);
  TORCH_CHECK(std::isfinite(bound_factor) && bound_factor >= 0.0,
              "segment_assign_cpu_out: bound_factor must be finite and >= 0, got ", bound_factor);
  TORCH_CHECK(std::isfinite(bound_abs) && bound_abs >= 0.0,
              "segment_assign_cpu_out: bound_abs must be finite and >= 0, got ", bound_abs);
  const int64_t N = points.size(0);
  check_out(index_out, "index_out", at::kLong, N);
  check_out(t_out, "t_out", points.scalar_type(), N);
  check_out(distance_out, "distance_out", points.scalar_type(), N);
  check_out(unsure_out, "unsure_out", at::kBool, N);
  if (N == 0) return;
  if (points.scalar_type() == at::kFloat) {
    run<float, float>(points, vertices, segments, bound_factor, bound_abs, block_rows, num_candidates, index_out,
                      t_out, distance_out, unsure_out);
  } else {
    run<double, double>(points, vertices, segments, bound_factor, bound_abs, block_rows, num_candidates, index_out,
                        t_out, distance_out, unsure_out);
  }
}

}  // namespace latentfast
