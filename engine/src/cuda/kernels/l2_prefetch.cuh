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

// Not inlined: a kernel asks once, and the loop inlined perturbed the register allocation of the flash-decoding
// kernels around it (ptxas: spills in two of its sixteen instances).
inline __device__ __noinline__ void issue_l2_share(const L2Prefetch& p, int64_t block, int64_t blocks) {
  for_l2_share(p, block, blocks, prefetch_l2_bulk);
}

// The tile (of a block's n_tiles) before which the block asks for its share of p: from_percent of them done; -1 for
// an empty list. A block asks tile 0's before its loop, so one with no tiles (a split past a short history) asks too.
__device__ __forceinline__ int l2_share_tile(const L2Prefetch& p, int64_t n_tiles) {
  return p.n > 0 ? static_cast<int>(n_tiles * p.from_percent / 100) : -1;
}

// Thread 0 of the block issues the block's share of p (blocks in x, y, z order).
__device__ __forceinline__ void ask_l2_share(const L2Prefetch& p) {
  if (threadIdx.x != 0 || threadIdx.y != 0 || threadIdx.z != 0) return;
  const int64_t block = blockIdx.x + static_cast<int64_t>(gridDim.x) * (blockIdx.y + static_cast<int64_t>(gridDim.y) * blockIdx.z);
  issue_l2_share(p, block, static_cast<int64_t>(gridDim.x) * gridDim.y * gridDim.z);
}

// [ptr, ptr + bytes)'s 16-byte aligned interior (as L2Prefetch::add takes it), by one thread.
__device__ __forceinline__ void prefetch_l2_range(const void* ptr, uint64_t bytes) {
  const uint64_t a = reinterpret_cast<uintptr_t>(ptr), first = (a + 15) / 16 * 16, end = (a + bytes) / 16 * 16;
  for (uint64_t at = first; at < end; at += kL2ChunkBytes)
    prefetch_l2_bulk(at, static_cast<uint32_t>(end - at < kL2ChunkBytes ? end - at : kL2ChunkBytes));
}

}  // namespace lmlab::kernels::cuda
