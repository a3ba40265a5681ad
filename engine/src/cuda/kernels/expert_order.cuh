// The order a token's routed experts are summed in (moe_combine, and the MoE sum fused into add_rmsnorm): ascending
// expert index, as the CPU adds them, so every path produces the same floats.
#pragma once

#include <cstdint>

namespace lmlab::kernels::cuda {

inline constexpr int kMaxTopK = 16;  // route_topk's bound on k

// order[0, k) = the token's slots 0..k-1 sorted by experts[slot] (insertion sort: k is small).
__device__ __forceinline__ void experts_ascending(const int32_t* experts, int k, int* order) {
  for (int j = 0; j < k; ++j) order[j] = j;
  for (int a = 1; a < k; ++a)
    for (int b = a; b > 0 && experts[order[b]] < experts[order[b - 1]]; --b) {
      const int tmp = order[b];
      order[b] = order[b - 1], order[b - 1] = tmp;
    }
}

}  // namespace lmlab::kernels::cuda
