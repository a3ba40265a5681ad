// What the tiled prefill attention (prefill_attention.cuh) shares with its sources (the f16 cache in attention.cu,
// the TurboQuant / affine records in turboquant.cu): its parameters, the staged tiles a Source fills, the f32 -> f16
// hi + lo split, cp.async, and the shared-memory opt-in.
#pragma once

#include <cuda_fp16.h>

#include <cstdint>
#include <mutex>

#include "cuda/cuda_check.h"

namespace lmlab::kernels::cuda::prefill {

inline constexpr int kTile = 64;     // history positions per tile
inline constexpr int kHalfPad = 8;   // row padding of the f16 tiles (16 bytes: rows start on different banks)
inline constexpr float kQScale = 16.0f, kPScale = 16384.0f;  // powers of two: the lo parts stay normal

struct Params {
  const float* q;
  float* out;
  const int32_t* positions;
  int64_t n_q, n_heads, n_kv_heads, head_dim, window;
  int group, queries_per_block;
  float scale, softcap;
  // splits > 1 (decode: few queries, long histories): each block takes one of `splits` ranges of its rows' history
  // and writes unnormalised partial states for attention.cu's merge kernel instead of `out`: part_o [n_q, n_heads,
  // splits, head_dim], part_ml [n_q, n_heads, splits, 2] (running max, sum). The partial outputs stay in the source's
  // rotated domain: a rotating source's caller merges with a merge that rotates back (turboquant.cu's).
  int splits = 1;
  float* part_o = nullptr;
  float* part_ml = nullptr;
};

// The K and V tiles of one history tile: hi parts, and lo parts when the source has them (else null).
struct Tiles {
  __half *k_hi, *k_lo, *v_hi, *v_lo;
};

__device__ __forceinline__ void split(float x, __half* hi, __half* lo) {
  const __half h = __float2half_rn(x);
  *hi = h;
  *lo = __float2half_rn(x - __half2float(h));
}

// Eight values (times `scale`) split as split() does, stored as one 16-byte hi and one 16-byte lo write (hi, lo
// 16-byte aligned): eight 2-byte stores each were most of a decoded tile's shared-memory traffic.
__device__ __forceinline__ void split8(const float (&v)[8], float scale, __half* hi, __half* lo) {
  uint32_t h[4], l[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float a = v[2 * i] * scale, b = v[2 * i + 1] * scale;
    const __half ha = __float2half_rn(a), hb = __float2half_rn(b);
    const __half la = __float2half_rn(a - __half2float(ha)), lb = __float2half_rn(b - __half2float(hb));
    h[i] = static_cast<uint32_t>(__half_as_ushort(ha)) | static_cast<uint32_t>(__half_as_ushort(hb)) << 16;
    l[i] = static_cast<uint32_t>(__half_as_ushort(la)) | static_cast<uint32_t>(__half_as_ushort(lb)) << 16;
  }
  *reinterpret_cast<uint4*>(hi) = make_uint4(h[0], h[1], h[2], h[3]);
  *reinterpret_cast<uint4*>(lo) = make_uint4(l[0], l[1], l[2], l[3]);
}

__device__ __forceinline__ unsigned smem_address(const void* p) {
  return static_cast<unsigned>(__cvta_generic_to_shared(p));
}

// cp.async of 16 bytes global -> shared, and its group bookkeeping (no-ops for sources that store directly).
__device__ __forceinline__ void copy16_async(void* dst, const void* src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(smem_address(dst)), "l"(src));
}
__device__ __forceinline__ void async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

// A kernel's dynamic shared memory granted so far (one per kernel instantiation).
struct SharedMemoryGrant {
  std::mutex mu;
  unsigned bytes = 0;
};

// Opts `kernel` into `bytes` of dynamic shared memory the first time it needs that much (once per process, kernel
// and size, not on every chunk's launch). Under the grant's lock: two host threads raising it at once must not leave
// the record above the attribute.
template <class Kernel>
void opt_in_shared_memory(Kernel kernel, unsigned bytes, SharedMemoryGrant& grant) {
  std::lock_guard<std::mutex> lock(grant.mu);
  if (bytes <= grant.bytes) return;
  lmlab::cuda::check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)),
                     "prefill attention (shared memory)");
  grant.bytes = bytes;
}

}  // namespace lmlab::kernels::cuda::prefill
