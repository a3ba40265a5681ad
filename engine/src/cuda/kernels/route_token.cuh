// One token's MoE routing by a warp: the softmax over its experts' logits and the k most probable picked by repeated
// selection in (probability descending, index ascending) order, the reference's tie rule (a NaN probability last).
// Shared by route_topk.cu's kernel and the router GEMV's last block (gemv.cu), so both route alike.
#pragma once

#include <cmath>
#include <cstdint>

#include "cuda/kernels/reduce.cuh"

namespace lmlab::kernels::cuda {

// Logits a lane holds in registers: E <= 32 * kRouteLogitsPerLane (128 and 256 experts) is routed from registers,
// each probability computed once (re-reading the logits through L2 and redoing expf in each of the k rounds took
// 11.9 us for E 128, k 8); larger E takes the loop form.
inline constexpr int kRouteLogitsPerLane = 8;

// (p, e) ahead of (q, f) in the pick order: probability descending, index ascending (| and &: no branches).
__device__ __forceinline__ bool ahead(float p, int e, float q, int f) { return (p > q) | ((p == q) & (e < f)); }

// A probability as the pick order sees it: a NaN one (any NaN or infinite logit makes the softmax's sum, and so every
// probability, NaN) orders after every number and before the -1 of lanes past E, so the k picks stay experts in
// [0, E) (index E, read by the gathered GEMVs, was an illegal access) and, by index, match the CPU's order.
inline constexpr float kNanPickKey = -0.5f;
__device__ __forceinline__ float pick_key(float p) { return isnan(p) ? kNanPickKey : p; }

// The weight written for a pick: NaN for a NaN probability (the output then shows it), else p, renormalised by the
// picks' sum when asked.
__device__ __forceinline__ float pick_weight(float key, float chosen_sum, bool renormalize) {
  return key < 0.0f ? __int_as_float(0x7fc00000) : renormalize ? key / chosen_sum : key;
}

// The warp's first (best_p, best) in the pick order, from each lane's own candidate; every lane gets it.
__device__ __forceinline__ void warp_first(float& best_p, int& best) {
  for (int o = 16; o > 0; o >>= 1) {
    const float op = __shfl_xor_sync(0xffffffffu, best_p, o);
    const int oi = __shfl_xor_sync(0xffffffffu, best, o);
    const bool take = ahead(op, oi, best_p, best);
    best_p = take ? op : best_p, best = take ? oi : best;
  }
}

// The register form: lane l holds logits l, l + 32, ...; the same floats as route_token_loop (the same sums in the
// same order, each probability the same expression), and lane i < k writes pick i.
__device__ __forceinline__ void route_token_registers(const float* x, int E, int k, bool renormalize,
                                                      int32_t* experts, float* weights) {
  const int lane = threadIdx.x & 31;
  float v[kRouteLogitsPerLane];
#pragma unroll
  for (int j = 0; j < kRouteLogitsPerLane; ++j) v[j] = lane + 32 * j < E ? __ldcg(x + lane + 32 * j) : -INFINITY;
  float mx = -INFINITY;
#pragma unroll
  for (int j = 0; j < kRouteLogitsPerLane; ++j)
    if (lane + 32 * j < E) mx = fmaxf(mx, v[j]);
  mx = warp_max(mx);
  float sum = 0.0f;
#pragma unroll
  for (int j = 0; j < kRouteLogitsPerLane; ++j)
    if (lane + 32 * j < E) sum += expf(v[j] - mx);
  sum = warp_sum(sum);
  float p[kRouteLogitsPerLane];  // -1 past E: never picked (a pick must beat best_p >= -1)
#pragma unroll
  for (int j = 0; j < kRouteLogitsPerLane; ++j) p[j] = lane + 32 * j < E ? pick_key(expf(v[j] - mx) / sum) : -1.0f;
  // Round i as in route_token_loop; every lane ends the round with the warp's pick, lane i keeps it.
  float prev_p = INFINITY, chosen_sum = 0.0f, mine_p = 0.0f;
  int prev_i = -1, mine = 0;
  for (int i = 0; i < k; ++i) {
    float best_p = -1.0f;
    int best = E;
#pragma unroll
    for (int j = 0; j < kRouteLogitsPerLane; ++j) {
      const int e = lane + 32 * j;
      const bool take = ahead(prev_p, prev_i, p[j], e) & (p[j] > best_p);
      best_p = take ? p[j] : best_p, best = take ? e : best;
    }
    warp_first(best_p, best);
    if (lane == i) mine_p = best_p, mine = best;
    chosen_sum += best_p;
    prev_p = best_p, prev_i = best;
  }
  if (lane < k) experts[lane] = mine, weights[lane] = pick_weight(mine_p, chosen_sum, renormalize);
}

// The loop form, any E: each round re-reads the logits and recomputes the probabilities.
__device__ inline void route_token_loop(const float* x, int E, int k, bool renormalize, int32_t* experts,
                                        float* weights) {
  const int lane = threadIdx.x & 31;
  float mx = -INFINITY;
  for (int e = lane; e < E; e += 32) mx = fmaxf(mx, __ldcg(x + e));
  mx = warp_max(mx);
  float sum = 0.0f;
  for (int e = lane; e < E; e += 32) sum += expf(__ldcg(x + e) - mx);
  sum = warp_sum(sum);
  // Round i takes the most probable expert after the previous pick in (probability descending, index
  // ascending) order: each lane its best candidate, then the warp's best of those.
  float prev_p = INFINITY, chosen_sum = 0.0f;
  int prev_i = -1;
  for (int i = 0; i < k; ++i) {
    float best_p = -1.0f;
    int best = E;
    for (int e = lane; e < E; e += 32) {
      const float p = pick_key(expf(__ldcg(x + e) - mx) / sum);
      if (ahead(prev_p, prev_i, p, e) && p > best_p) best_p = p, best = e;
    }
    warp_first(best_p, best);
    if (lane == 0) experts[i] = best, weights[i] = best_p;
    chosen_sum += best_p;
    prev_p = best_p, prev_i = best;
  }
  if (lane == 0)
    for (int i = 0; i < k; ++i) weights[i] = pick_weight(weights[i], chosen_sum, renormalize);
}

// x: the token's E logits (read through L2: the router GEMV's other blocks wrote them); experts[0..k) and
// weights[0..k) out.
__device__ inline void route_token(const float* x, int64_t E, int64_t k, bool renormalize, int32_t* experts,
                                   float* weights) {
  // (k <= kMaxTopK = 16 < 32: lane i keeps pick i; E, an expert count, fits an int)
  if (E <= 32 * kRouteLogitsPerLane)
    route_token_registers(x, static_cast<int>(E), static_cast<int>(k), renormalize, experts, weights);
  else
    route_token_loop(x, static_cast<int>(E), static_cast<int>(k), renormalize, experts, weights);
}

}  // namespace lmlab::kernels::cuda
