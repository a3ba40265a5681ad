// What the two tensor-core TurboQuant decode kernels share (tq_decode_mma.cu: a warp owns 16-dim slices of every
// position of a tile; tq_decode_warps.cu: a warp owns 16 positions with all their dims): the codebook pair tables,
// the key pairs' lookups, the query rotated once and split into f16 hi + lo fragments.
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

#include "cuda/kernels/prefill_attention.cuh"
#include "cuda/kernels/tq_pair_index.h"
#include "cuda/kernels/tq_records.cuh"

namespace lmlab::kernels::cuda::tq::mma {

using prefill::mma_16816;
using prefill::split2;

constexpr float kValueScale = 16.0f;              // codebook values in the tables
constexpr float kQScale = prefill::kQScale;       // the query in its fragments
constexpr float kPScale = 16384.0f;               // a tile's largest P x V scalar goes in as at most this
constexpr float kScoreUnscale = 1.0f / (kQScale * kValueScale);
constexpr int kChunk = 32;                        // dims per step of the scores: one byte of each plane per lane
constexpr unsigned kMaxSharedBytes = 227 * 1024;  // sm_90's most dynamic shared memory per block

// Shared bytes of the tables and the query's fragments: [4^KB key pairs][256 value pairs] of f16x2, then per 32-dim
// chunk and lane 4 hi and 4 lo f16 pairs.
__host__ __device__ constexpr int key_table_bytes(int key_bits) { return (1 << (2 * key_bits)) * 4; }
inline constexpr int kValueTableBytes = 256 * 4;
// The warps kernel keeps kValueCopies interleaved copies of the value table (entry e of copy k at word kValueCopies e
// + k; lane l reads copy l % kValueCopies): its lookups' random indices put ~3.4 of a warp's 32 loads on one bank with
// one copy, at most 2 with 16 (lanes l and l + 16 share a copy).
inline constexpr int kValueCopies = 16;

inline int query_fragment_bytes(int head_dim) { return (head_dim / kChunk) * 32 * 32; }

// Where both kernels' shared memory starts: the key and value pair tables, the query's fragments, the rotated query
// [G][D] (f32; the blocks' outputs reuse it); `end` is the next 16-byte boundary after it.
struct SetupLayout {
  int lut_k, lut_v, qf, qs, end;
};
// The value table's and the query fragments' offsets: constants of the key bits, which the warps kernel folds into
// its lookups' immediates (the key table is at 0).
__host__ __device__ constexpr int value_table_offset(int key_bits) { return key_table_bytes(key_bits); }
__host__ __device__ constexpr int query_fragments_offset(int key_bits, int value_copies) {
  return value_table_offset(key_bits) + kValueTableBytes * value_copies;
}
inline SetupLayout setup_layout(const TqKvBlocks& kv, int G, int value_copies = 1) {
  const int D = static_cast<int>(kv.head_dim);
  SetupLayout l;
  l.lut_k = 0;
  l.lut_v = value_table_offset(kv.k.bits);
  l.qf = query_fragments_offset(kv.k.bits, value_copies);
  l.qs = l.qf + query_fragment_bytes(D);
  l.end = l.qs + (G * D * 4 + 15) / 16 * 16;
  return l;
}

// Two codebook values x kValueScale as the table's f16x2 entry (a in the low half); exact (lloyd_max.h).
__device__ __forceinline__ uint32_t pair_entry(float a, float b) {
  const __half2 h = __floats2half2_rn(a * kValueScale, b * kValueScale);
  return *reinterpret_cast<const uint32_t*>(&h);
}

// The table entries of lane c's 4 key pairs in chunk j of group record gr (tq_pair_index.h): lut is [4^KB pairs] of
// f16x2.
template <int KB>
__device__ __forceinline__ void key_pairs(const uint8_t* gr, int j, int c, int plane_bytes, const uint32_t* lut,
                                          uint32_t (&e)[4]) {
  uint32_t idx[4];
  key_pair_indices<KB>(gr, j, c, plane_bytes, idx);
#pragma unroll
  for (int i = 0; i < 4; ++i) e[i] = lut[idx[i]];
}

// Pi q of the block's query heads into qs [G][D], a warp per group vector of g dims (g / 32 consecutive dims a lane;
// the butterflies past them by shuffles): block_rotate's operations on the same values, without its ~10 block
// barriers (a barrier a butterfly stage: a block of 8 heads had spent them in every split of every layer). Groups of
// 32 to 128 dims (decode_mma_supports takes keys in groups of 32 or more, check_codec at most 128).
__device__ __forceinline__ void rotate_query(const TqAttnParams& a, int64_t t, int64_t kh, float* qs) {
  constexpr int kMaxPerLane = 4;  // g <= 128
  const TqKvBlocks& kv = a.kv;
  const int D = static_cast<int>(kv.head_dim), g = kv.k.group_dim, per = g / 32, lane = threadIdx.x & 31;
  const float* q = a.q + (t * a.n_heads + kh * a.group) * D;
  for (int vec = threadIdx.x >> 5; vec < a.group * (D / g); vec += blockDim.x >> 5) {
    const int base = vec * g, d0 = base % D + lane * per;  // the lane's first dim of its head
    float x[kMaxPerLane];
#pragma unroll
    for (int i = 0; i < kMaxPerLane; ++i)
      if (i < per) x[i] = kv.rot_d1 ? __fmul_rn(q[base + lane * per + i], kv.rot_d1[d0 + i]) : q[base + lane * per + i];
    if (kv.rot_d1) {
      warp_fwht(x, per, g, lane);
#pragma unroll
      for (int i = 0; i < kMaxPerLane; ++i)
        if (i < per) x[i] = __fmul_rn(x[i], __fmul_rn(kv.rot_d2[d0 + i], kv.rot_inv_sqrt));
    }
#pragma unroll
    for (int i = 0; i < kMaxPerLane; ++i)
      if (i < per) qs[base + lane * per + i] = x[i];
  }
}

// The block's set-up, every thread: the pair tables, query t's heads of KV head kh rotated once into qs [G][D], and
// their fragments qf: lane (head r, c) of chunk j holds q[r][32 j + 8 c + 0 .. 7] x kQScale as 4 hi and 4 lo pairs
// ([chunk][hi, lo][lane] as uint4, so a warp's loads of one part are 512 contiguous bytes); zeros past G. qf is
// complete after the caller's next barrier.
// kQueryA: the fragments as the A operand of S^T = Q K^T (tq_decode_warps.cu): per chunk {hi 0, lo 0, hi 1, lo 1}
// then {hi 2, lo 2, hi 3, lo 3} (k steps 0 and 1, loaded straight into the MMA's registers) instead of the 4 hi then
// the 4 lo pairs (the B operand of tq_decode_mma.cu's S = K Q^T), and lane c's chunk j holds dims 8 (NC c + j) ..
// + 7 (NC = D / 32: key_lane_indices' order) instead of 32 j + 8 c .. + 7. VC: the value table's copies.
template <int KB, bool kQueryA = false, int VC = 1>
__device__ __forceinline__ void block_setup(const TqAttnParams& a, int64_t t, int64_t kh, uint32_t* lut_k,
                                            uint32_t* lut_v, float* qs, uint4* qf) {
  const TqKvBlocks& kv = a.kv;
  const int D = static_cast<int>(kv.head_dim), G = a.group, NC = D / kChunk;
  for (int i = threadIdx.x; i < (1 << (2 * KB)); i += blockDim.x) {
    int first, second;
    key_pair_codes<KB>(i, first, second);
    lut_k[i] = pair_entry(kv.k.centroids[first], kv.k.centroids[second]);
  }
  for (int i = threadIdx.x; i < 256; i += blockDim.x) {
    const uint32_t e = pair_entry(kv.v.centroids[i & 15], kv.v.centroids[i >> 4]);
    if constexpr (VC == 1) {
      lut_v[i] = e;
    } else {
      static_assert(VC % 4 == 0, "copies stored 4 at a time");
#pragma unroll
      for (int k = 0; k < VC / 4; ++k) reinterpret_cast<uint4*>(lut_v + VC * i)[k] = make_uint4(e, e, e, e);
    }
  }
  rotate_query(a, t, kh, qs);
  __syncthreads();
  for (int e = threadIdx.x; e < NC * 32; e += blockDim.x) {
    const int j = e >> 5, h = (e & 31) >> 2, cc = e & 3;
    const float* x = qs + h * D + 8 * (kQueryA ? NC * cc + j : 4 * j + cc);
    uint32_t hi[4], lo[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float x0 = h < G ? x[2 * i] * kQScale : 0.0f, x1 = h < G ? x[2 * i + 1] * kQScale : 0.0f;
      split2(x0, x1, hi[i], lo[i]);
    }
    if constexpr (kQueryA) {
      qf[2 * e - (e & 31)] = make_uint4(hi[0], lo[0], hi[1], lo[1]);
      qf[2 * e - (e & 31) + 32] = make_uint4(hi[2], lo[2], hi[3], lo[3]);
    } else {
      qf[2 * e - (e & 31)] = make_uint4(hi[0], hi[1], hi[2], hi[3]);
      qf[2 * e - (e & 31) + 32] = make_uint4(lo[0], lo[1], lo[2], lo[3]);
    }
  }
}

// 2^(14 - e) for a tile whose largest P x V scalar magnitude is vmax < 2^e: the tile's products go in as at most
// kPScale (normal and finite in f16). Returns e (0 for vmax 0 or not finite): frexpf's exponent, read from the bits
// as the prefill kernel's column scales do (the scalars are f16 values, normal in f32).
__device__ __forceinline__ int pv_exponent(float vmax) {
  return vmax > 0.0f && vmax <= 65504.0f ? prefill::exponent_above(vmax) : 0;
}

}  // namespace lmlab::kernels::cuda::tq::mma
