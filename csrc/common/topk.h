// The candidate scan shared by the native nearest-segment op (segment_assign) and the fused SFVQ step:
// cheap float32 distances, computed chunk by chunk, feed the K smallest into a fixed-size sorted list, which
// the caller then re-scores exactly in float64.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

namespace latentfast {

// Largest number of candidates kept per row (they live in fixed-size arrays, i.e. registers/stack).
constexpr int64_t kMaxCandidates = 8;

// The K smallest (value, index) pairs seen so far, ascending; equal values keep the earlier (lower) index first
// because insertion is strict.
struct TopK {
  double v[kMaxCandidates];
  int64_t i[kMaxCandidates];
  int64_t K;
  void reset(int64_t k) {
    K = k;
    for (int64_t s = 0; s < K; ++s) {
      v[s] = std::numeric_limits<double>::infinity();
      i[s] = s;  // valid indices even if nothing finite is ever inserted (then the row is flagged)
    }
  }
  inline void insert(double val, int64_t idx) {
    int64_t s = K - 1;
    while (s > 0 && val < v[s - 1]) {
      v[s] = v[s - 1];
      i[s] = i[s - 1];
      --s;
    }
    v[s] = val;
    i[s] = idx;
  }
  // One chunk of cheap distances vals[0..n) of indices j0..j0+n-1, whose minimum and NaN count the caller's
  // vectorised pass has just computed: skipped unless it can change the list; a NaN (overflow) sets ``bad``.
  template <typename V>
  inline void offer_chunk(const V* vals, int64_t n, int64_t j0, V min, int64_t nan, bool& bad) {
    double thresh = v[K - 1];
    if (nan == 0 && !(static_cast<double>(min) < thresh)) return;
    for (int64_t j = 0; j < n; ++j) {
      const double x = static_cast<double>(vals[j]);
      if (!(x >= thresh)) {
        if (x != x) {
          bad = true;
          continue;
        }
        insert(x, j0 + j);
        thresh = v[K - 1];
      }
    }
  }
};

// The certification rule of both kernels: an entry whose cheap distance is finite and exceeds the best exact
// distance so far by more than the rounding bound cannot be (or tie) the exact nearest one.  A non-finite
// cheap distance (overflow) rules nothing out.  Used for the K-th candidate (the row is certified) and, in the
// second pass of an uncertified row, for every entry (the ones not ruled out are re-scored exactly).
inline bool ruled_out(double cheap, double bound, double best_exact) {
  return std::isfinite(cheap) && cheap - bound > best_exact;
}

}  // namespace latentfast
