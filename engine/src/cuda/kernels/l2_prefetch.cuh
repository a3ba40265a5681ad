// The device side of l2_prefetch.h: one thread issues its block's share as bulk L2 prefetches, which return at once
// (the fetches go on in the memory system; nothing waits for them, and nothing is read from them here).
#pragma once

#include "cuda/kernels/l2_prefetch.h"

namespace lmlab::kernels::cuda {

__device__ __forceinline__ void issue_l2_share(const L2Prefetch& p, int64_t block, int64_t blocks) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  for_l2_share(p, block, blocks, [](uint64_t a, uint32_t bytes) {
    asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(a), "r"(bytes) : "memory");
  });
#endif
}

}  // namespace lmlab::kernels::cuda
