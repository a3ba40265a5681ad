// One token's MoE routing by a warp: the softmax over its experts' logits and the k most probable picked by repeated
// selection in (probability descending, index ascending) order, the reference's tie rule. Shared by route_topk.cu's
// kernel and the router GEMV's last block (gemv.cu), so both route alike.
#pragma once

#include <cmath>
#include <cstdint>

#include "cuda/kernels/reduce.cuh"

namespace lmlab::kernels::cuda {

// x: the token's E logits (read through L2: the router GEMV's other blocks wrote them); lane 0 writes experts[0..k)
// and weights[0..k).
__device__ inline void route_token(const float* x, int64_t E, int64_t k, bool renormalize, int32_t* experts,
                                   float* weights) {
  const int lane = threadIdx.x & 31;
  float mx = -INFINITY;
  for (int64_t e = lane; e < E; e += 32) mx = fmaxf(mx, __ldcg(x + e));
  mx = warp_max(mx);
  float sum = 0.0f;
  for (int64_t e = lane; e < E; e += 32) sum += expf(__ldcg(x + e) - mx);
  sum = warp_sum(sum);
  // Round i takes the most probable expert after the previous pick in (probability descending, index
  // ascending) order: each lane its best candidate, then the warp's best of those.
  float prev_p = INFINITY, chosen_sum = 0.0f;
  int64_t prev_i = -1;
  for (int64_t i = 0; i < k; ++i) {
    float best_p = -1.0f;
    int64_t best = E;
    for (int64_t e = lane; e < E; e += 32) {
      const float p = expf(__ldcg(x + e) - mx) / sum;
      const bool after_prev = p < prev_p || (p == prev_p && e > prev_i);
      if (after_prev && p > best_p) best_p = p, best = e;
    }
    for (int o = 16; o > 0; o >>= 1) {
      const float op = __shfl_xor_sync(0xffffffffu, best_p, o);
      const int64_t oi = __shfl_xor_sync(0xffffffffu, best, o);
      if (op > best_p || (op == best_p && oi < best)) best_p = op, best = oi;
    }
    if (lane == 0) experts[i] = static_cast<int32_t>(best), weights[i] = best_p;
    chosen_sum += best_p;
    prev_p = best_p, prev_i = best;
  }
  if (renormalize && lane == 0)
    for (int64_t i = 0; i < k; ++i) weights[i] /= chosen_sum;
}

}  // namespace lmlab::kernels::cuda
