// The device side of l2_prefetch.h: one thread issues bulk L2 prefetches (its block's share of a list, or one range),
// which return at once (the fetches go on in the memory system; nothing waits for them or reads them here).
#pragma once

#include "cuda/kernels/l2_prefetch.h"

namespace lmlab::kernels::cuda {

__device__ __forceinline__ void prefetch_l2_bulk(uint64_t a, uint32_t bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(a), "r"(bytes) : "memory");
#endif
}

__device__ __forceinline__ void issue_l2_share(const L2Prefetch& p, int64_t block, int64_t blocks) {
  for_l2_share(p, block, blocks, prefetch_l2_bulk);
}

// [ptr, ptr + bytes)'s 16-byte aligned interior (as L2Prefetch::add takes it), by one thread.
__device__ __forceinline__ void prefetch_l2_range(const void* ptr, uint64_t bytes) {
  const uint64_t a = reinterpret_cast<uintptr_t>(ptr), first = (a + 15) / 16 * 16, end = (a + bytes) / 16 * 16;
  for (uint64_t at = first; at < end; at += kL2ChunkBytes)
    prefetch_l2_bulk(at, static_cast<uint32_t>(end - at < kL2ChunkBytes ? end - at : kL2ChunkBytes));
}

}  // namespace lmlab::kernels::cuda
