// cp.async (global -> shared without a register round trip) and the dynamic shared-memory opt-in: one definition for
// the kernels that stage data this way (the tiled attention and its sources, TurboQuant's decode).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <mutex>

#include "cuda/cuda_check.h"

namespace lmlab::kernels::cuda {

__device__ __forceinline__ unsigned smem_address(const void* p) {
  return static_cast<unsigned>(__cvta_generic_to_shared(p));
}

// 16 bytes into shared memory (cg: L2 only, the data is used once); the "memory" clobbers keep the compiler from
// moving shared-memory accesses across the copies and waits.
__device__ __forceinline__ void copy16_async(void* dst, const void* src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(smem_address(dst)), "l"(src) : "memory");
}
// 4 bytes (ca: the only mode a copy this small has).
__device__ __forceinline__ void copy4_async(void* dst, const void* src) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(smem_address(dst)), "l"(src) : "memory");
}
// 8 bytes (ca).
__device__ __forceinline__ void copy8_async(void* dst, const void* src) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 8;\n" ::"r"(smem_address(dst)), "l"(src) : "memory");
}
__device__ __forceinline__ void async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
// Waits until at most N of this thread's committed groups are still in flight.
template <int N>
__device__ __forceinline__ void async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// Waits for every cp.async this thread issued, committed or not.
__device__ __forceinline__ void async_wait_all() { asm volatile("cp.async.wait_all;\n" ::: "memory"); }

// Bulk asynchronous copies (sm_90's copy engine: one instruction for a whole 16-byte aligned range, completing on an
// mbarrier in shared memory by the bytes it expects) and the mbarrier operations they need. A barrier's phase
// completes when its one arrival (arrive_expect_tx) has come and every expected byte has landed.
__device__ __forceinline__ void mbarrier_init(uint64_t* bar, unsigned arrivals) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_address(bar)), "r"(arrivals) : "memory");
}
// Makes the initialisation visible to the other threads and to the copy engine.
__device__ __forceinline__ void mbarrier_init_fence() {
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}
__device__ __forceinline__ void mbarrier_arrive_expect_tx(uint64_t* bar, unsigned bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_address(bar)), "r"(bytes)
               : "memory");
}
// One arrival (a release: the caller's earlier shared-memory accesses come before the phase completes).
__device__ __forceinline__ void mbarrier_arrive(uint64_t* bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(smem_address(bar)) : "memory");
}
// Waits until the barrier's phase of this parity has completed.
__device__ __forceinline__ void mbarrier_wait(uint64_t* bar, unsigned parity) {
  asm volatile(
      "{\n"
      ".reg .pred done;\n"
      "WAIT:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra WAIT;\n"
      "}\n" ::"r"(smem_address(bar)),
      "r"(parity)
      : "memory");
}
// bytes (a multiple of 16) from src to dst, both 16-byte aligned, completing on bar.
__device__ __forceinline__ void bulk_copy_async(void* dst, const void* src, unsigned bytes, uint64_t* bar) {
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(
                   smem_address(dst)),
               "l"(src), "r"(bytes), "r"(smem_address(bar))
               : "memory");
}

// A kernel's dynamic shared memory granted so far (one per kernel instantiation).
struct SharedMemoryGrant {
  std::mutex mu;
  unsigned bytes = 0;
};

// Opts `kernel` into `bytes` of dynamic shared memory the first time it needs that much (once per process, kernel
// and size, not on every launch). Under the grant's lock: two host threads raising it at once must not leave the
// record above the attribute.
template <class Kernel>
void opt_in_shared_memory(Kernel kernel, unsigned bytes, SharedMemoryGrant& grant, const char* what) {
  std::lock_guard<std::mutex> lock(grant.mu);
  if (bytes <= grant.bytes) return;
  lmlab::cuda::check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)),
                     what);
  grant.bytes = bytes;
}

}  // namespace lmlab::kernels::cuda
