// The order of the TurboQuant encoder's double sums over a group of g <= 128 terms (||x||^2, <u, c>, ||c||^2,
// ||r||^2 in tq_codec.cpp), which tq_encode_kernel (cuda/kernels/turboquant.cu) runs with a warp per group:
//   32 lane partials, lane l summing the terms i = l, l + 32, l + 64, ... (< g) in increasing i from 0.0, then an
//   xor butterfly: for o = 16, 8, 4, 2, 1, partial l += partial l ^ o.
// The order exists so that a warp computes each sum in five shuffle steps (no serial chain over g terms) and the
// CPU reproduces it bit for bit, which keeps the device's records byte-equal to TqCodec's.
#pragma once

#include <cstdint>

namespace lmlab::turboquant {

inline constexpr int kSumLanes = 32;  // a warp (the butterfly below is written for 32)

// Sum of t[0, n) in the order above. The terms come in already rounded to double (an array: no product can be
// fused into the adds, as the device's __dmul_rn / __dadd_rn are not).
inline double lane_order_sum(const double* t, int64_t n) {
  double p[kSumLanes];
  int64_t i0 = 0;
  if (n >= kSumLanes) {  // the lanes' first terms (0.0 + t keeps the sign of a zero as the lane's first add does)
    for (int l = 0; l < kSumLanes; ++l) p[l] = 0.0 + t[l];
    i0 = kSumLanes;
  } else {
    for (int l = 0; l < kSumLanes; ++l) p[l] = 0.0;
  }
  for (; i0 + kSumLanes <= n; i0 += kSumLanes)  // a row of the 32 lanes at a time (vectorizes; same order)
    for (int l = 0; l < kSumLanes; ++l) p[l] += t[i0 + l];
  for (int l = 0; i0 + l < n; ++l) p[l] += t[i0 + l];  // a partial last row (g = 16)
  // The butterfly's steps o = 16, 8, 4, 2, 1. After step o partials l and l ^ o hold the same double (a + b and
  // b + a round alike), so every lane's result is this pairwise tree over the lower halves.
  for (int l = 0; l < 16; ++l) p[l] += p[l + 16];
  for (int l = 0; l < 8; ++l) p[l] += p[l + 8];
  for (int l = 0; l < 4; ++l) p[l] += p[l + 4];
  p[0] += p[2];
  p[1] += p[3];
  return p[0] + p[1];
}

}  // namespace lmlab::turboquant
