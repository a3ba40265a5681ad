// The merge of split-K attention states, shared by the f16 (attention.cu) and TurboQuant (turboquant.cu) merge
// kernels: block per (query, head), kMergeThreads threads. Each split s left an unnormalised output o_s [D] and its
// running (max m_s, sum l_s); the result is sum_s w_s o_s / sum_s w_s l_s with w_s = exp(m_s - max m).
// The threads split the splits into blockDim / D parts, each part's loads all in flight: one thread per element
// walking 66 splits 8 or 16 loads at a time took ~11 us a layer for 32 heads (sixteenth session, ncu: 22.8 K
// cycles), a tenth of the TurboQuant decode attention.
#pragma once

#include <cmath>

#include "cuda/kernels/kernels_cuda.h"
#include "cuda/kernels/reduce.cuh"

namespace lmlab::kernels::cuda {

inline constexpr int kMergeThreads = 512;

// The normalised output of one (query, head) from its splits' states: po [splits][D] unnormalised outputs, ml
// [splits][m, l]. Every thread of the block calls it; the result is in shared memory, complete when it returns.
// D <= 256 (the attention kernels' bound), splits <= kMaxAttentionSplits.
__device__ __forceinline__ float* merge_split_states(const float* po, const float* ml, int D, int splits) {
  constexpr int kLoads = 16;
  __shared__ float weight[kMaxAttentionSplits], red[kMergeThreads], ob[256], inv_sum;
  // The weights w_s and 1 / sum_s w_s l_s, by the first warp.
  if (threadIdx.x < 32) {
    const int lane = threadIdx.x;
    float M = -INFINITY;
    for (int s = lane; s < splits; s += 32) M = fmaxf(M, ml[2 * s]);
    M = warp_max(M);
    float L = 0.0f;
    for (int s = lane; s < splits; s += 32) {
      const float f = M == -INFINITY ? 0.0f : expf(ml[2 * s] - M);
      weight[s] = f;
      L += ml[2 * s + 1] * f;
    }
    L = warp_sum(L);
    if (lane == 0) inv_sum = L > 0.0f ? 1.0f / L : 0.0f;
  }
  __syncthreads();
  // Thread (part, d) sums splits part, part + parts, ... of element d, kLoads loads in flight.
  const int parts = max(1, static_cast<int>(blockDim.x) / D), part = static_cast<int>(threadIdx.x) / D;
  const int d = static_cast<int>(threadIdx.x) - part * D;
  if (part < parts) {
    float acc = 0.0f;
    for (int s0 = part; s0 < splits; s0 += parts * kLoads) {
      float x[kLoads];
#pragma unroll
      for (int k = 0; k < kLoads; ++k) {
        const int s = s0 + k * parts;
        // A split of no weight is not read: the f16 decode's splits past the history write only their (max, sum).
        x[k] = s < splits && weight[s] != 0.0f ? po[static_cast<int64_t>(s) * D + d] : 0.0f;
      }
#pragma unroll
      for (int k = 0; k < kLoads; ++k)
        if (const int s = s0 + k * parts; s < splits) acc = fmaf(x[k], weight[s], acc);
    }
    red[threadIdx.x] = acc;
  }
  __syncthreads();
  for (int e = threadIdx.x; e < D; e += blockDim.x) {
    float o = 0.0f;
    for (int p = 0; p < parts; ++p) o += red[p * D + e];
    ob[e] = o * inv_sum;
  }
  __syncthreads();
  return ob;
}

}  // namespace lmlab::kernels::cuda
