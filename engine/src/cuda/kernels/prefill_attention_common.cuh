// What the tiled prefill attention (prefill_attention.cuh) shares with its sources (the f16 cache in attention.cu,
// the TurboQuant / affine records in turboquant.cu): its parameters, the staged tiles a Source fills, the f32 -> f16
// hi + lo split (cp.async and the shared-memory opt-in: async_copy.cuh).
#pragma once

#include <cuda_fp16.h>

#include <cstdint>
#include <mutex>

#include "cuda/cuda_check.h"
#include "cuda/kernels/async_copy.cuh"

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

}  // namespace lmlab::kernels::cuda::prefill
