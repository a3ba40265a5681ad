// TurboQuant (and affine) KV records on the GPU, in the blocks and record layout of kv/turboquant/tq_codec.h, so
// kv/ keeps the block tables, prompt cache, window release and byte accounting (docs/cuda.md).
//   - tq_kv_write: a block per group vector (token, KV head, K or V, group of g <= 128 dims). It rotates the group
//     (D2 H D1 / sqrt(g), arXiv 2504.19874 Algorithm 1's Pi), then encodes it like TqCodec::encode with the same
//     float / double operations in the same order (no FMA contraction: __fadd_rn, __dmul_rn, ...):
//       lloyd_max: ||x|| summed in double; u = x / ||x||; without QJL the angle search over the 17 scales lambda
//         (tq_codec.cpp: codes nearest to lambda u, <u, c> and ||c||^2 in double at every scale) and the scalar
//         ||x|| / <u, c>; with QJL the nearest codes, ||r|| and the signs of S r (Algorithm 2).
//       affine: min, (max - min) / levels rounded to f16, codes rint((x - min) / scale).
//     Every double sum runs in kv/turboquant/lane_sum.h's order, which the CPU reproduces bit for bit: lane l sums
//     the coordinates i = l, l + 32, ... and five xor shuffles combine the lanes, so no lane waits on a serial
//     chain over the group; the angle search's scales are dealt to the block's warps.
//   - tq_attention: flash-decoding on the packed codes, block = (KV head, split, query): the tiled kernel
//     (tq_decode_kernel below: 64-position tiles staged by cp.async, a thread per position for the scores of the G
//     query heads, one softmax max / sum per tile and head, V a thread per 8-coordinate chunk and position lane),
//     the query rotated once per block (and projected by S for QJL keys), V accumulated in the rotated domain and
//     the output rotated back once (Pi^T) by the merge kernel or, without splits, by the block. Chunks of many
//     queries (prefill) decode each history tile once for the chunk into prefill_attention.cuh's tensor-core
//     kernel (TqPrefillSource below).
#include <cuda_fp16.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cmath>

#include "cuda/cuda_check.h"
#include "cuda/kernels/chained_launch.cuh"
#include "cuda/kernels/kernels_cuda.h"
#include "cuda/kernels/prefill_attention.cuh"
#include "cuda/kernels/reduce.cuh"
#include "cuda/kernels/split_merge.cuh"
#include "cuda/kernels/tq_decode_mma.cuh"
#include "cuda/kernels/tq_decode_warps.cuh"
#include "cuda/kernels/tq_records.cuh"
#include "kv/turboquant/tq_codec.h"
#include "lmlab/error.h"

namespace lmlab::kernels::cuda {

namespace {

using namespace tq;

// ---------------------------------------------------------------------------------------------------------------
// Shared helpers

// util/half.h's f32_to_f16 (round to nearest even, overflow to infinity), so scalars round as on the CPU.
__device__ __forceinline__ uint16_t f32_to_f16_cpu(float f) {
  const uint32_t u = __float_as_uint(f);
  const uint32_t sign = (u >> 16) & 0x8000u;
  int32_t exp = static_cast<int32_t>((u >> 23) & 0xff) - 127 + 15;
  uint32_t mant = u & 0x7fffffu;
  if (((u >> 23) & 0xff) == 0xff) return static_cast<uint16_t>(sign | 0x7c00u | (mant ? 0x200u : 0));
  if (exp >= 31) return static_cast<uint16_t>(sign | 0x7c00u);
  if (exp <= 0) {
    if (exp < -10) return static_cast<uint16_t>(sign);
    mant |= 0x800000u;
    const uint32_t shift = static_cast<uint32_t>(14 - exp);
    uint32_t half = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1), mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half & 1u))) ++half;
    return static_cast<uint16_t>(sign | half);
  }
  uint32_t h = (static_cast<uint32_t>(exp) << 10) | (mant >> 13);
  const uint32_t rem = mant & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;  // may carry into the exponent: still correct
  return static_cast<uint16_t>(sign | h);
}

// A group's packed codes (kv/turboquant/pack.h): planes for 2, 3, 5 bits (plane_bytes = g / 8 each), nibbles for 4
// (16 entries per little-endian uint64, entry j at bit 32 (j % 2) + 4 (j / 2)), bytes for 8.
// Byte ob of the packed codes of idx [g].
__device__ __forceinline__ uint8_t packed_byte(const uint8_t* idx, int ob, int bits, int g) {
  if (bits == 8) return idx[ob];
  if (bits == 4) {
    const int w = ob >> 3, b = ob & 7;
    auto entry = [&](int pos) { return idx[16 * w + 2 * ((pos & 31) >> 2) + (pos >> 5)] & 15; };
    return static_cast<uint8_t>(entry(8 * b) | (entry(8 * b + 4) << 4));
  }
  const int plane_bytes = g / 8, p = ob / plane_bytes, bb = ob % plane_bytes;
  int v = 0;
  for (int e = 0; e < 8; ++e) v |= ((idx[8 * bb + e] >> p) & 1) << e;
  return static_cast<uint8_t>(v);
}

// ---------------------------------------------------------------------------------------------------------------
// Encode

constexpr int kScales = turboquant::kAngleScales;
// A warp per angle scale: a decode step writes one token (16 blocks at 8 KV heads), so the block's critical path is
// the time, and with 4 warps each ran 5 scales' searches and butterflies one after another (13 us a layer, H100).
constexpr int kEncWarps = kScales;
constexpr int kMaxG = 128;

struct EncodeParams {
  TqKvBlocks kv;
  const float* k;
  const float* v;
  const int32_t* positions;
  int64_t n;
  double lambda0;           // 1 - span: scale 0 multiplies in double (tq_codec.cpp)
  float lambda[kScales];    // angle_scale(s), s > 0
};

static_assert(kScales <= 32, "a lane per scale when the cosines are taken");

// kv/turboquant/lane_sum.h's sum of the warp's lane partials (each lane's terms summed in increasing index): the
// xor butterfly, after which every lane holds the same double (a + b and b + a round alike).
__device__ __forceinline__ double warp_lane_order_sum(double partial) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) partial = __dadd_rn(partial, __shfl_xor_sync(0xffffffffu, partial, o));
  return partial;
}

// Index of the nearest centroid for each of N values (Codebook::quantize's search; t: nb = 2^bits - 1 ascending
// boundaries): the count of boundaries below x takes exactly `bits` halvings, so the searches need no
// data-dependent loop and the angle search's 17 scales interleave (each lane's 17 used to wait for one another, a
// shared-memory round trip per step).
template <int N>
__device__ __forceinline__ void quantize(const float* t, int nb, const float (&x)[N], int (&code)[N]) {
#pragma unroll
  for (int k = 0; k < N; ++k) code[k] = 0;
  for (int step = (nb + 1) >> 1; step > 0; step >>= 1)
#pragma unroll
    for (int k = 0; k < N; ++k)
      if (x[k] > t[code[k] + step - 1]) code[k] += step;
}

// The block's shared state. Every warp rotates its own copy of the group (the same floats, so no block barrier
// waits on another warp's rotation); the codes per scale, the QJL signs and the scales' cosines are the block's.
struct EncodeBlock {
  float x[kEncWarps][kMaxG];      // each warp's rotated group (the QJL residual after the nearest codes)
  uint8_t codes[kScales][kMaxG];  // codes per scale (angle search); codes[0] also holds the QJL / affine codes
  uint8_t sign[kMaxG];            // QJL: S r >= 0
  float cent[32], bound[32];
  double cs[kScales], dot[kScales];  // angle search: each scale's cosine and <u, c>, from the warp that owns it
};

constexpr int kScalesPerWarp = (kScales + kEncWarps - 1) / kEncWarps;

// Block per group vector (token, KV head, K or V, group). The angle search's 17 scales are dealt to the block's
// warps (scale sc to warp sc % kEncWarps), each running them as the warp per vector did, so every scale's sums are
// the same doubles in the same order and the records stay byte-identical; one warp carried all 17 before, a chain
// of ~5,000 instructions that made one token's write ~19 us a layer on the H100 (ncu, thirteenth session).
__global__ void __launch_bounds__(kEncWarps * 32) tq_encode_kernel(EncodeParams a) {
  __shared__ EncodeBlock s;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const TqKvBlocks& kv = a.kv;
  const int64_t nkv = kv.n_kv_heads, D = kv.head_dim;
  // job = ((t nkv + h) 2 + is_v) ng + gi, in 32 bits (a 64-bit division is a ~70-instruction call on this chain)
  const uint32_t job = blockIdx.x, ng = static_cast<uint32_t>(kv.k.n_groups), nkv32 = static_cast<uint32_t>(nkv);
  const uint32_t vec = job / ng, head_row = vec >> 1;
  const int gi = static_cast<int>(job - vec * ng);
  const bool is_v = (vec & 1u) != 0;
  const uint32_t t32 = head_row / nkv32;
  const int64_t h = head_row - t32 * nkv32, t = t32;
  const TqDeviceCodec c = is_v ? kv.v : kv.k;
  const int g = c.group_dim;
  float* x = s.x[warp];

  // Before the wait (chained_launch.cuh): what no kernel of the step writes, so its loads overlap the kernel before
  // (the decode's single-token encode is all latency): the codebook, the rotation's signs and the record's place
  // (positions and block table come from the host before the step's kernels, as EncodeGate reads them too).
  if (c.scheme == kTqLloydMax)
    for (int i = threadIdx.x; i < (1 << c.bits); i += kEncWarps * 32) {
      s.cent[i] = c.centroids[i];
      if (i + 1 < (1 << c.bits)) s.bound[i] = c.boundaries[i];
    }
  constexpr int kPer = kMaxG / 32;  // a lane's coordinates i = lane + 32 j
  float d1[kPer], d2[kPer];
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    const int i = lane + 32 * j;
    const bool in = kv.rot_d1 && i < g;
    d1[j] = in ? kv.rot_d1[gi * g + i] : 1.0f;
    d2[j] = in ? __fmul_rn(kv.rot_d2[gi * g + i], kv.rot_inv_sqrt) : 1.0f;
  }
  const uint32_t B32 = static_cast<uint32_t>(kv.block_tokens), p32 = static_cast<uint32_t>(a.positions[t]);
  const uint32_t blk = p32 / B32;
  const int64_t B = B32, slot = p32 - blk * B32;
  uint8_t* rec = kv.blocks[blk] +
                 (is_v ? nkv * B * kv.k.record_bytes + (h * B + slot) * kv.v.record_bytes
                       : (h * B + slot) * kv.k.record_bytes) +
                 static_cast<int64_t>(gi) * c.group_bytes;
  chain_enter();  // the K / V rows are the kernel before's

  // Rotate: y = x * d1, the butterflies, * (d2 / sqrt(g)), in the lane's registers: stages below 32 pair lanes
  // (shuffles), 32 and 64 pair the lane's own coordinates; each pair's sum and difference are the CPU's float
  // operations, stage by stage in its order.
  const float* src = (is_v ? a.v : a.k) + (t * nkv + h) * D + gi * g;
  float xr[kPer];
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    const int i = lane + 32 * j;
    xr[j] = i < g ? (kv.rot_d1 ? __fmul_rn(src[i], d1[j]) : src[i]) : 0.0f;
  }
  if (kv.rot_d1) {
    for (int hh = 1; hh < g && hh < 32; hh *= 2) {
      const bool upper = (lane & hh) != 0;
#pragma unroll
      for (int j = 0; j < kPer; ++j) {
        const float other = __shfl_xor_sync(0xffffffffu, xr[j], hh);
        xr[j] = upper ? __fsub_rn(other, xr[j]) : __fadd_rn(xr[j], other);
      }
    }
#pragma unroll
    for (int hj = 1; hj < kPer; hj *= 2)  // hh = 32 hj
      if (32 * hj < g)
#pragma unroll
        for (int j = 0; j < kPer; ++j)
          if ((j & hj) == 0) {
            const float p = xr[j], q = xr[j + hj];
            xr[j] = __fadd_rn(p, q);
            xr[j + hj] = __fsub_rn(p, q);
          }
#pragma unroll
    for (int j = 0; j < kPer; ++j) xr[j] = __fmul_rn(xr[j], d2[j]);
  }
#pragma unroll
  for (int j = 0; j < kPer; ++j)
    if (lane + 32 * j < g) x[lane + 32 * j] = xr[j];
  __syncthreads();  // the codebook is in; each warp's rotated group is in its x

  const uint8_t* idx = s.codes[0];
  uint16_t scalar0 = 0, scalar1 = 0;  // every thread computes the same values

  if (c.scheme == kTqAffine) {
    float lo = INFINITY, hi = -INFINITY;
    for (int i = lane; i < g; i += 32) lo = fminf(lo, x[i]), hi = fmaxf(hi, x[i]);
    for (int o = 16; o > 0; o >>= 1) {
      lo = fminf(lo, __shfl_xor_sync(0xffffffffu, lo, o));
      hi = fmaxf(hi, __shfl_xor_sync(0xffffffffu, hi, o));
    }
    const int levels = (1 << c.bits) - 1;
    const float min_h = h2f(f32_to_f16_cpu(lo));
    const float scale_h = h2f(f32_to_f16_cpu(__fdiv_rn(__fsub_rn(hi, min_h), static_cast<float>(levels))));
    if (warp == 0)
      for (int i = lane; i < g; i += 32) {
        const float q = scale_h > 0.0f ? rintf(__fdiv_rn(__fsub_rn(x[i], min_h), scale_h)) : 0.0f;
        s.codes[0][i] = static_cast<uint8_t>(fminf(fmaxf(q, 0.0f), static_cast<float>(levels)));
      }
    scalar0 = f32_to_f16_cpu(scale_h);
    scalar1 = f32_to_f16_cpu(min_h);
  } else {
    // ||x|| in double: this lane's coordinates i = lane + 32 j, then the butterfly (lane_sum.h).
    double ss = 0.0;
    for (int i = lane; i < g; i += 32) {
      const double xi = x[i];
      ss = __dadd_rn(ss, __dmul_rn(xi, xi));
    }
    const double norm = __dsqrt_rn(warp_lane_order_sum(ss));
    const double inv = norm > 0.0 ? __ddiv_rn(1.0, norm) : 0.0;
    const int nb = (1 << c.bits) - 1;
    // u_i = x_i / ||x|| is only ever needed by the lane that owns coordinate i, so it stays in registers.
    if (c.qjl) {
      // Algorithm 2: nearest codes, residual r = u - c[idx] (into each warp's x), ||r||, then the signs of S r a
      // row per thread of the block.
      double rr = 0.0;
      for (int i = lane; i < g; i += 32) {
        const float u = __double2float_rn(__dmul_rn(static_cast<double>(x[i]), inv));
        const float ux[1] = {u};
        int kx[1];
        quantize(s.bound, nb, ux, kx);
        const int k = kx[0];
        if (warp == 0) s.codes[0][i] = static_cast<uint8_t>(k);
        const float r = __fsub_rn(u, s.cent[k]);
        x[i] = r;
        rr = __dadd_rn(rr, __dmul_rn(static_cast<double>(r), static_cast<double>(r)));
      }
      rr = warp_lane_order_sum(rr);
      __syncwarp();
      for (int row = threadIdx.x; row < g; row += kEncWarps * 32) {
        const float* srow = c.qjl_matrix + static_cast<int64_t>(row) * g;
        float acc = 0.0f;
        for (int j = 0; j < g; ++j) acc = fmaf(srow[j], x[j], acc);
        s.sign[row] = acc >= 0.0f ? 1 : 0;
      }
      scalar0 = f32_to_f16_cpu(__double2float_rn(norm));
      scalar1 = f32_to_f16_cpu(__double2float_rn(__dsqrt_rn(rr)));
    } else {
      // The angle search: this warp's scales sc = warp + kEncWarps k; each lane takes its coordinates through them
      // at once (codes, and the partials of <u, c_s> and ||c_s||^2 in registers), then the butterflies give every
      // lane the sums, computed from scratch per scale as the CPU does. (Warps with fewer scales run the last one
      // on a repeated scale and drop it.)
      double dot[kScalesPerWarp], c2[kScalesPerWarp];
#pragma unroll
      for (int k = 0; k < kScalesPerWarp; ++k) dot[k] = 0.0, c2[k] = 0.0;
      for (int i = lane; i < g; i += 32) {
        const float u = __double2float_rn(__dmul_rn(static_cast<double>(x[i]), inv));
        float xs[kScalesPerWarp];
        int code[kScalesPerWarp];
#pragma unroll
        for (int k = 0; k < kScalesPerWarp; ++k) {
          const int sc = min(warp + kEncWarps * k, kScales - 1);
          xs[k] = sc == 0 ? __double2float_rn(__dmul_rn(static_cast<double>(u), a.lambda0))
                          : __fmul_rn(u, a.lambda[sc]);
        }
        quantize(s.bound, nb, xs, code);
#pragma unroll
        for (int k = 0; k < kScalesPerWarp; ++k) {
          const int sc = warp + kEncWarps * k;
          if (sc < kScales) s.codes[sc][i] = static_cast<uint8_t>(code[k]);
          const double ci = s.cent[code[k]];
          dot[k] = __dadd_rn(dot[k], __dmul_rn(static_cast<double>(u), ci));
          c2[k] = __dadd_rn(c2[k], __dmul_rn(ci, ci));
        }
      }
#pragma unroll
      for (int k = 0; k < kScalesPerWarp; ++k) dot[k] = warp_lane_order_sum(dot[k]), c2[k] = warp_lane_order_sum(c2[k]);
      // The cosines, a division and a square root each, lane k taking this warp's scale k (all at once).
      double d_lane = 0.0, q_lane = 0.0;
#pragma unroll
      for (int k = 0; k < kScalesPerWarp; ++k)
        if (lane == k) d_lane = dot[k], q_lane = c2[k];
      const double cs_lane = q_lane > 0.0 ? __ddiv_rn(d_lane, __dsqrt_rn(q_lane)) : -1.0;
      if (const int sc = warp + kEncWarps * lane; lane < kScalesPerWarp && sc < kScales)
        s.cs[sc] = cs_lane, s.dot[sc] = d_lane;
      __syncthreads();  // every scale's cosine and codes are in
      // The choice, in the CPU's order over the scales (every thread: the same result).
      double best = -2.0, best_dot = 0.0;
      int best_s = kScales / 2;
      for (int sc = 0; sc < kScales; ++sc) {
        if (sc == kScales / 2) continue;
        const double cs = s.cs[sc];
        if (cs > best) best = cs, best_dot = s.dot[sc], best_s = sc;
      }
      double dot_uc = best_dot;
      if (s.cs[kScales / 2] >= best) {
        best_s = kScales / 2;
        dot_uc = s.dot[kScales / 2];
      }
      idx = s.codes[best_s];
      scalar0 = f32_to_f16_cpu(__double2float_rn(dot_uc > 0.0 ? __ddiv_rn(norm, dot_uc) : norm));
    }
  }
  __syncthreads();  // the chosen codes (and QJL signs) are in

  // [codes][signs][f16 scalars]
  for (int ob = threadIdx.x; ob < c.code_bytes; ob += kEncWarps * 32) rec[ob] = packed_byte(idx, ob, c.bits, g);
  if (c.qjl)
    for (int ob = threadIdx.x; ob < g / 8; ob += kEncWarps * 32) {
      int v = 0;
      for (int e = 0; e < 8; ++e) v |= s.sign[8 * ob + e] << e;
      rec[c.code_bytes + ob] = static_cast<uint8_t>(v);
    }
  if (threadIdx.x == 0) {
    uint16_t* sc = reinterpret_cast<uint16_t*>(rec + c.scalar_offset);
    sc[0] = scalar0;
    if (c.scheme == kTqAffine || c.qjl) sc[1] = scalar1;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Attention

constexpr int kMaxGroup = 8;
constexpr size_t kMaxSmem = 48 * 1024;
constexpr size_t kMaxDecodeSmem = 160 * 1024;  // opted into above 48 KB (sm_90 allows 227 KB)
constexpr unsigned kMaxPrefillSmem = 227 * 1024;  // sm_90's most dynamic shared memory per block

// Block per (query, head), kMergeThreads threads: merges the splits' states (split_merge.cuh) and rotates the output
// back.
__global__ void __launch_bounds__(kMergeThreads) tq_merge_kernel(const float* part_o, const float* part_ml, float* out,
                                                                int D, int splits, int g, const float* d1,
                                                                const float* d2, float inv_sqrt) {
  chain_enter();
  const int64_t qh = blockIdx.x;
  float* ob = merge_split_states(part_o + qh * splits * D, part_ml + qh * splits * 2, D, splits);
  if (d1) block_rotate(ob, 1, D, g, d2, d1, inv_sqrt);
  for (int d = threadIdx.x; d < D; d += blockDim.x) out[qh * D + d] = ob[d];
}

// Block per (query, head), kMergeWarps warps and one barrier: each warp computes every split's weight itself (a
// lane's 8 splits' maxima and sums in registers, then its own shared copy), warp w sums splits w, w + kMergeWarps,
// ... with each lane holding D / 32 consecutive dims (kInFlight splits' loads in flight), and warp 0 adds the warps'
// sums in a fixed order and rotates back with warp_fwht. tq_merge_kernel (merge_split_states, then block_rotate's ~10
// block barriers) took 7.6 us a layer inside the 8B decode at 40K positions (66 splits; eighteenth session, ncu).
constexpr int kMergeWarps = 4;
// N consecutive floats at a 4 N-byte aligned address, in 16-byte (or 8-byte) loads.
template <int N>
__device__ __forceinline__ void load_floats(const float* p, float (&x)[N]) {
  if constexpr (N == 2) {
    const float2 v = *reinterpret_cast<const float2*>(p);
    x[0] = v.x, x[1] = v.y;
  } else {
#pragma unroll
    for (int i = 0; i < N; i += 4) {
      const float4 v = *reinterpret_cast<const float4*>(p + i);
      x[i] = v.x, x[i + 1] = v.y, x[i + 2] = v.z, x[i + 3] = v.w;
    }
  }
}
template <int D>
__global__ void __launch_bounds__(kMergeWarps * 32) tq_merge_warps_kernel(const float* part_o, const float* part_ml,
                                                                         float* out, int splits, int g,
                                                                         const float* d1, const float* d2,
                                                                         float inv_sqrt) {
  constexpr int kPer = D / 32, kSplitsPerLane = kMaxAttentionSplits / 32, kInFlight = 16;
  static_assert(kPer * 32 == D && (kPer & (kPer - 1)) == 0, "head_dim 64, 128 or 256");
  __shared__ float weight[kMergeWarps][kMaxAttentionSplits];
  __shared__ __align__(16) float partial[kMergeWarps][D];
  chain_enter();
  const int64_t qh = blockIdx.x;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const float2* ml = reinterpret_cast<const float2*>(part_ml + qh * splits * 2);
  float m[kSplitsPerLane], l[kSplitsPerLane], M = -INFINITY;
#pragma unroll
  for (int k = 0; k < kSplitsPerLane; ++k) {
    const int s = lane + 32 * k;
    const float2 v = s < splits ? ml[s] : make_float2(-INFINITY, 0.0f);
    m[k] = v.x, l[k] = v.y, M = fmaxf(M, v.x);
  }
  M = warp_max(M);
  float L = 0.0f;
#pragma unroll
  for (int k = 0; k < kSplitsPerLane; ++k) {
    const float w = m[k] == -INFINITY ? 0.0f : expf(m[k] - M);  // M is finite where any m is
    L = fmaf(l[k], w, L);
    weight[warp][lane + 32 * k] = w;
  }
  L = warp_sum(L);
  __syncwarp();
  // The lane's dims' sums over the warp's splits.
  const float* po = part_o + qh * splits * D + kPer * lane;
  float acc[kPer] = {};
  for (int s0 = warp; s0 < splits; s0 += kMergeWarps * kInFlight) {
    float x[kInFlight][kPer];
#pragma unroll
    for (int k = 0; k < kInFlight; ++k) {
      const int s = s0 + k * kMergeWarps;
      if (s < splits) load_floats<kPer>(po + static_cast<int64_t>(s) * D, x[k]);
    }
#pragma unroll
    for (int k = 0; k < kInFlight; ++k)
      if (const int s = s0 + k * kMergeWarps; s < splits)
#pragma unroll
        for (int i = 0; i < kPer; ++i) acc[i] = fmaf(x[k][i], weight[warp][s], acc[i]);
  }
#pragma unroll
  for (int i = 0; i < kPer; ++i) partial[warp][kPer * lane + i] = acc[i];
  __syncthreads();
  if (warp != 0) return;
  const float inv = L > 0.0f ? 1.0f / L : 0.0f;
  float x[kPer];
#pragma unroll
  for (int i = 0; i < kPer; ++i) {
    float o = 0.0f;
#pragma unroll
    for (int w = 0; w < kMergeWarps; ++w) o += partial[w][kPer * lane + i];
    x[i] = o * inv;
  }
  if (d1) {  // Pi^T = D1 H D2 / sqrt(g), block_rotate's operations
#pragma unroll
    for (int i = 0; i < kPer; ++i) x[i] = __fmul_rn(x[i], d2[kPer * lane + i]);
    warp_fwht(x, kPer, g, lane);
#pragma unroll
    for (int i = 0; i < kPer; ++i) x[i] = __fmul_rn(x[i], __fmul_rn(d1[kPer * lane + i], inv_sqrt));
  }
#pragma unroll
  for (int i = 0; i < kPer; ++i) out[qh * D + kPer * lane + i] = x[i];
}

// ---------------------------------------------------------------------------------------------------------------
// Tiled decode attention (flash-decoding with a lane per position for the scores).
//
// Block = (KV head, split, query), 128 threads. The split's positions go by tiles of kDT = 64: the K and V records
// of a tile (contiguous per KV block: one segment per block the tile touches) are copied into shared memory with
// 16-byte cp.async (the aligned 16-byte chunks around each segment, so a record at any 2-byte offset costs no
// narrow loads; block pointers are 256-byte aligned and their sizes rounded to 256, so the chunks stay inside),
// double-buffered: tile i + 1 is in flight while tile i is computed. Per tile:
//   scores: thread = (position, half of the head's 8-coordinate chunks): it decodes its key's codes (planes spread
//     to bytes by multiplies, nibbles, bytes) through the codebook and dots them with the G rotated query heads
//     (shared memory, broadcast), no reduction per position;
//   softmax: warp w owns heads w and w + 4: one max and one sum over the tile per head (not per position);
//   V: thread = (8-coordinate chunk, position lane): it walks its lane's positions with the probabilities
//     (times the V scalar) from shared memory, accumulating G x 8 outputs in registers; the position lanes of a
//     chunk are adjacent lanes, summed by shuffles once per split.
// The output stays in the rotated domain until the end (the merge or the block rotates it back once).

constexpr int kDParts = kDThreads / kDT;      // threads per position in the score phase
constexpr int kDMinSplitPositions = 2 * kDT;  // a split is at least two tiles (one in flight, one computed)

struct DecodeLayout {
  int q_off, sq_off, psc_off, prob_off, corr_off, ml_off, off_off, tile_off, k_area, v_area, total;
};
DecodeLayout decode_layout(const TqKvBlocks& kv, int G) {
  const int D = static_cast<int>(kv.head_dim);
  auto r16 = [](int x) { return (x + 15) / 16 * 16; };
  DecodeLayout l;
  l.q_off = 256;  // [0, 256): the K and V codebooks
  l.sq_off = l.q_off + r16(G * D * 4);
  l.psc_off = l.sq_off + (kv.k.qjl ? r16(G * D * 4) : 0);
  l.prob_off = l.psc_off + r16(kDParts * G * kDT * 4);
  l.corr_off = l.prob_off + kDT * 8 * 4;
  l.ml_off = l.corr_off + 8 * 4;
  l.off_off = l.ml_off + 16 * 4;
  l.tile_off = l.off_off + r16(4 * kDT * 2);
  l.k_area = staged_records_bytes(kv.k.record_bytes, kv.block_tokens);
  l.v_area = staged_records_bytes(kv.v.record_bytes, kv.block_tokens);
  l.total = l.tile_off + 2 * (l.k_area + l.v_area);
  return l;
}

struct DecodeArgs {
  TqAttnParams p;
  DecodeLayout l;
};

// Codes of coordinates e0 .. e0 + 7 (e0 a multiple of 8) of a group's packed codes r (2-byte aligned), in the
// layout above (planes for 2, 3, 5 bits, nibbles for 4, bytes for 8).
template <int BITS>
__device__ __forceinline__ void codes8(const uint8_t* r, int e0, int plane_bytes, int (&c)[8]) {
  if constexpr (BITS == 8) {
    const uint16_t* h = reinterpret_cast<const uint16_t*>(r + e0);
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const uint32_t x = h[k];
      c[2 * k] = static_cast<int>(x & 255u), c[2 * k + 1] = static_cast<int>(x >> 8);
    }
  } else if constexpr (BITS == 4) {
    // Entries j of a 16-entry uint64: even j in the low word (nibble j / 2), odd j in the high word.
    const uint8_t* w = r + ((e0 >> 4) << 3) + ((e0 >> 3) & 1) * 2;
    const uint32_t lo = *reinterpret_cast<const uint16_t*>(w), hi = *reinterpret_cast<const uint16_t*>(w + 4);
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      c[2 * k] = static_cast<int>((lo >> (4 * k)) & 15u);
      c[2 * k + 1] = static_cast<int>((hi >> (4 * k)) & 15u);
    }
  } else {
    // Plane p's byte holds bit p of the 8 codes; (nibble * 0x00204081) & 0x01010101 puts bit k at byte k.
    const int byte = e0 >> 3;
    uint32_t lo = 0, hi = 0;
#pragma unroll
    for (int p = 0; p < BITS; ++p) {
      const uint32_t b = r[p * plane_bytes + byte];
      lo |= (((b & 15u) * 0x00204081u) & 0x01010101u) << p;
      hi |= (((b >> 4) * 0x00204081u) & 0x01010101u) << p;
    }
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      c[k] = static_cast<int>((lo >> (8 * k)) & 255u);
      c[4 + k] = static_cast<int>((hi >> (8 * k)) & 255u);
    }
  }
}

// Values of coordinates e0 .. e0 + 7 up to the group's factor: lloyd_max cent[code] (factor a), affine
// min + scale code (factor 1).
template <int BITS, bool AFF>
__device__ __forceinline__ float values8(const TqDeviceCodec& c, const uint8_t* r, int e0, const float* cent,
                                         float (&v)[8]) {
  int code[8];
  codes8<BITS>(r, e0, c.group_dim / 8, code);
  if constexpr (AFF) {
    const float sc = load_half(r + c.scalar_offset), mn = load_half(r + c.scalar_offset + 2);
#pragma unroll
    for (int i = 0; i < 8; ++i) v[i] = fmaf(sc, static_cast<float>(code[i]), mn);
    return 1.0f;
  } else {
#pragma unroll
    for (int i = 0; i < 8; ++i) v[i] = cent[code[i]];
    return load_half(r + c.scalar_offset);
  }
}

// Score phase: thread (position pos, part) sums its chunks' share of the G dots into psc [parts][G][kDT].
template <int KB, bool KAFF, bool QJL, int GM>
__device__ __forceinline__ void score_tile(const TqKvBlocks& kv, const uint8_t* tile_k, const uint16_t* koff,
                                           const float* cent_k, const float* qs, const float* sq, float* psc, int n,
                                           int G) {
  const int pos = threadIdx.x % kDT, part = threadIdx.x / kDT;
  if (pos >= n) return;
  const TqDeviceCodec& c = kv.k;
  const int D = static_cast<int>(kv.head_dim), g = c.group_dim, log_g = __ffs(g) - 1, nch = D / 8;
  const int c0 = part * nch / kDParts, c1 = (part + 1) * nch / kDParts;
  const uint8_t* rec = tile_k + koff[pos];
  float s[GM];
#pragma unroll
  for (int h = 0; h < GM; ++h) s[h] = 0.0f;
  for (int ch = c0; ch < c1; ++ch) {
    const int d0 = ch * 8, e0 = d0 & (g - 1);
    const uint8_t* r = rec + (d0 >> log_g) * c.group_bytes;
    float kv8[8];
    const float fa = values8<KB, KAFF>(c, r, e0, cent_k, kv8);
    float sg[8], kappa = 0.0f;
    if constexpr (QJL) {
      kappa = fa * load_half(r + c.scalar_offset + 2) *
              static_cast<float>(turboquant::kSqrtHalfPi / static_cast<double>(g));
      const uint32_t bits = r[c.code_bytes + (e0 >> 3)];
#pragma unroll
      for (int i = 0; i < 8; ++i) sg[i] = ((bits >> i) & 1u) ? 1.0f : -1.0f;
    }
#pragma unroll
    for (int h = 0; h < GM; ++h) {
      if (h >= G) break;
      const float4 qa = *reinterpret_cast<const float4*>(qs + h * D + d0);
      const float4 qb = *reinterpret_cast<const float4*>(qs + h * D + d0 + 4);
      float t = qa.x * kv8[0];
      t = fmaf(qa.y, kv8[1], t), t = fmaf(qa.z, kv8[2], t), t = fmaf(qa.w, kv8[3], t);
      t = fmaf(qb.x, kv8[4], t), t = fmaf(qb.y, kv8[5], t), t = fmaf(qb.z, kv8[6], t), t = fmaf(qb.w, kv8[7], t);
      s[h] = fmaf(fa, t, s[h]);
      if constexpr (QJL) {
        const float4 ua = *reinterpret_cast<const float4*>(sq + h * D + d0);
        const float4 ub = *reinterpret_cast<const float4*>(sq + h * D + d0 + 4);
        float u = ua.x * sg[0];
        u = fmaf(ua.y, sg[1], u), u = fmaf(ua.z, sg[2], u), u = fmaf(ua.w, sg[3], u);
        u = fmaf(ub.x, sg[4], u), u = fmaf(ub.y, sg[5], u), u = fmaf(ub.z, sg[6], u), u = fmaf(ub.w, sg[7], u);
        s[h] = fmaf(kappa, u, s[h]);
      }
    }
  }
#pragma unroll
  for (int h = 0; h < GM; ++h)
    if (h < G) psc[(part * G + h) * kDT + pos] = s[h];
}

// V phase: thread (chunk, position lane pl of npl) accumulates prob [pos][8] x V over its lane's positions.
template <int VB, bool VAFF, int GM>
__device__ __forceinline__ void value_tile(const TqKvBlocks& kv, const uint8_t* tile_v, const uint16_t* voff,
                                           const float* cent_v, const float* prob, int n, int G, int chunk, int pl,
                                           int npl, float (&acc)[GM][8]) {
  const TqDeviceCodec& c = kv.v;
  const int g = c.group_dim, log_g = __ffs(g) - 1;
  const int d0 = chunk * 8, e0 = d0 & (g - 1), goff = (d0 >> log_g) * c.group_bytes;
  for (int pos = pl; pos < n; pos += npl) {
    const uint8_t* r = tile_v + voff[pos] + goff;
    float v8[8];
    const float fa = values8<VB, VAFF>(c, r, e0, cent_v, v8);
    float w[GM];
    if constexpr (GM >= 4) {
#pragma unroll
      for (int h4 = 0; h4 < GM; h4 += 4) {
        const float4 p4 = *reinterpret_cast<const float4*>(prob + pos * 8 + h4);
        w[h4] = p4.x * fa, w[h4 + 1] = p4.y * fa, w[h4 + 2] = p4.z * fa, w[h4 + 3] = p4.w * fa;
      }
    } else {
#pragma unroll
      for (int h = 0; h < GM; ++h) w[h] = prob[pos * 8 + h] * fa;
    }
#pragma unroll
    for (int h = 0; h < GM; ++h) {
      if (h >= G) break;
#pragma unroll
      for (int i = 0; i < 8; ++i) acc[h][i] = fmaf(w[h], v8[i], acc[h][i]);
    }
  }
}

template <bool QJL, int GM>
__device__ __forceinline__ void score_dispatch(const TqKvBlocks& kv, const uint8_t* tile_k, const uint16_t* koff,
                                               const float* cent_k, const float* qs, const float* sq, float* psc,
                                               int n, int G) {
  if (kv.k.scheme == kTqAffine) {
    if (kv.k.bits == 8) score_tile<8, true, false, GM>(kv, tile_k, koff, cent_k, qs, sq, psc, n, G);
    else score_tile<4, true, false, GM>(kv, tile_k, koff, cent_k, qs, sq, psc, n, G);
    return;
  }
  switch (kv.k.bits) {
    case 2: score_tile<2, false, QJL, GM>(kv, tile_k, koff, cent_k, qs, sq, psc, n, G); break;
    case 3: score_tile<3, false, QJL, GM>(kv, tile_k, koff, cent_k, qs, sq, psc, n, G); break;
    case 4: score_tile<4, false, QJL, GM>(kv, tile_k, koff, cent_k, qs, sq, psc, n, G); break;
    default: score_tile<5, false, QJL, GM>(kv, tile_k, koff, cent_k, qs, sq, psc, n, G); break;
  }
}

template <int GM>
__device__ __forceinline__ void value_dispatch(const TqKvBlocks& kv, const uint8_t* tile_v, const uint16_t* voff,
                                               const float* cent_v, const float* prob, int n, int G, int chunk,
                                               int pl, int npl, float (&acc)[GM][8]) {
  if (kv.v.scheme == kTqAffine) {
    if (kv.v.bits == 8) value_tile<8, true, GM>(kv, tile_v, voff, cent_v, prob, n, G, chunk, pl, npl, acc);
    else value_tile<4, true, GM>(kv, tile_v, voff, cent_v, prob, n, G, chunk, pl, npl, acc);
    return;
  }
  switch (kv.v.bits) {
    case 2: value_tile<2, false, GM>(kv, tile_v, voff, cent_v, prob, n, G, chunk, pl, npl, acc); break;
    case 3: value_tile<3, false, GM>(kv, tile_v, voff, cent_v, prob, n, G, chunk, pl, npl, acc); break;
    case 4: value_tile<4, false, GM>(kv, tile_v, voff, cent_v, prob, n, G, chunk, pl, npl, acc); break;
    default: value_tile<5, false, GM>(kv, tile_v, voff, cent_v, prob, n, G, chunk, pl, npl, acc); break;
  }
}

// kMinBlocks: resident blocks per SM asked of the register allocator (DecodeOptions::tq_decode_min_blocks, to measure
// with LMLAB_ATTENTION_BLOCKS_PER_SM: the kernel issues on ~60% of cycles at 4 blocks, 95 registers; thirteenth
// session).
template <bool QJL, int GM, int kMinBlocks>
__global__ void __launch_bounds__(kDThreads, kMinBlocks) tq_decode_kernel(DecodeArgs da) {
  extern __shared__ __align__(16) uint8_t smem[];
  const TqAttnParams& a = da.p;
  const DecodeLayout& L = da.l;
  EncodeGate gate = enter_decode(a);
  const TqKvBlocks& kv = a.kv;
  const int64_t kh = blockIdx.x, split = blockIdx.y, t = blockIdx.z;
  const int splits = gridDim.y, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int D = static_cast<int>(kv.head_dim), G = a.group, g = kv.k.group_dim;
  float* cent_k = reinterpret_cast<float*>(smem);
  float* cent_v = cent_k + 32;
  float* qs = reinterpret_cast<float*>(smem + L.q_off);
  float* sq = reinterpret_cast<float*>(smem + L.sq_off);
  float* psc = reinterpret_cast<float*>(smem + L.psc_off);
  float* prob = reinterpret_cast<float*>(smem + L.prob_off);
  float* corr_s = reinterpret_cast<float*>(smem + L.corr_off);
  float* ml_s = reinterpret_cast<float*>(smem + L.ml_off);
  uint16_t* offs = reinterpret_cast<uint16_t*>(smem + L.off_off);  // [2 buffers][K, V][kDT]
  uint8_t* tiles = smem + L.tile_off;
  const int buf_bytes = L.k_area + L.v_area;

  const SplitRange range = split_range(a, t, split, splits);

  // Tile 0's copies go first, to overlap the query's rotation.
  first_tile(kv, kh, range, tiles, offs, L.k_area, gate);

  if (kv.k.scheme == kTqLloydMax && threadIdx.x < (1 << kv.k.bits)) cent_k[threadIdx.x] = kv.k.centroids[threadIdx.x];
  if (kv.v.scheme == kTqLloydMax && threadIdx.x < (1 << kv.v.bits)) cent_v[threadIdx.x] = kv.v.centroids[threadIdx.x];
  for (int e = threadIdx.x; e < G * D; e += kDThreads) qs[e] = a.q[(t * a.n_heads + kh * G) * D + e];
  __syncthreads();
  if (kv.rot_d1) block_rotate(qs, G, D, g, kv.rot_d1, kv.rot_d2, kv.rot_inv_sqrt);
  if constexpr (QJL) {
    for (int e = threadIdx.x; e < G * D; e += kDThreads) {
      const int d = e % D, base = e - d + (d & ~(g - 1)), row = d & (g - 1);
      const float* srow = kv.k.qjl_matrix + static_cast<int64_t>(row) * g;
      float acc = 0.0f;
      for (int j = 0; j < g; ++j) acc = fmaf(srow[j], qs[base + j], acc);
      sq[e] = acc;
    }
  }

  // V mapping: npl position lanes (a power of two, adjacent lanes) per 8-coordinate chunk.
  const int nch = D / 8;
  int npl = 32;
  while (npl * nch > kDThreads) npl >>= 1;
  const int chunk = threadIdx.x / npl, pl = threadIdx.x % npl;
  const bool v_active = chunk < nch;

  float acc[GM][8];
#pragma unroll
  for (int h = 0; h < GM; ++h)
#pragma unroll
    for (int i = 0; i < 8; ++i) acc[h][i] = 0.0f;
  float m_run[2] = {-INFINITY, -INFINITY}, l_run[2] = {0.0f, 0.0f};  // heads warp and warp + 4

  for (int64_t it = 0; it < range.n_tiles; ++it) {
    async_wait<0>();
    __syncthreads();  // tile it is in; every thread is done with tile it - 1 (its buffer, prob, corr)
    const int buf = static_cast<int>(it & 1);
    const int n = next_tile(kv, kh, range, it, tiles, offs, L.k_area, buf_bytes, gate);
    const uint8_t* tk = tiles + buf * buf_bytes;
    const uint16_t* ko = offs + buf * 2 * kDT;

    score_dispatch<QJL, GM>(kv, tk, ko, cent_k, qs, sq, psc, n, G);
    __syncthreads();

    // Softmax: one max and one sum per tile and head.
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) {
      const int h = warp + 4 * hh;
      if (h >= G) break;
      auto raw = [&](int p) {
        float r = 0.0f;
#pragma unroll
        for (int part = 0; part < kDParts; ++part) r += psc[(part * G + h) * kDT + p];
        return r;
      };
      float pr[kDT / 32];
      const float corr = tile_softmax(raw, n, a.scale, a.softcap, lane, m_run[hh], l_run[hh], pr);
#pragma unroll
      for (int k = 0; k < kDT / 32; ++k) prob[(lane + 32 * k) * 8 + h] = pr[k];
      if (lane == 0) corr_s[h] = corr;
    }
    __syncthreads();

#pragma unroll
    for (int h = 0; h < GM; ++h) {
      if (h >= G) break;
      const float cr = corr_s[h];
#pragma unroll
      for (int i = 0; i < 8; ++i) acc[h][i] *= cr;
    }
    if (v_active)
      value_dispatch<GM>(kv, tk + L.k_area, ko + kDT, cent_v, prob, n, G, chunk, pl, npl, acc);
  }
  gate.finish();

  // The position lanes of a chunk are adjacent lanes of one warp: sum them.
#pragma unroll
  for (int h = 0; h < GM; ++h)
#pragma unroll
    for (int i = 0; i < 8; ++i)
      for (int o = npl / 2; o > 0; o >>= 1) acc[h][i] += __shfl_xor_sync(0xffffffffu, acc[h][i], o);
  if (lane == 0) {
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) {
      const int h = warp + 4 * hh;
      if (h < G) ml_s[2 * h] = m_run[hh], ml_s[2 * h + 1] = l_run[hh];
    }
  }
  __syncthreads();  // ml_s is in; qs is no longer read (it takes the outputs below)
  const bool writer = v_active && pl == 0;
  if (splits > 1) {
    if (writer) {
#pragma unroll
      for (int h = 0; h < GM; ++h) {
        if (h >= G) break;
        const int64_t slot = (t * a.n_heads + kh * G + h) * splits + split;
        float* o = a.part_o + slot * D + chunk * 8;
#pragma unroll
        for (int i = 0; i < 8; ++i) o[i] = acc[h][i];
        if (chunk == 0) a.part_ml[slot * 2] = ml_s[2 * h], a.part_ml[slot * 2 + 1] = ml_s[2 * h + 1];
      }
    }
    return;  // uniform over the block
  }
  float* ob = qs;  // [G][D] normalised outputs in the rotated domain
  if (writer) {
#pragma unroll
    for (int h = 0; h < GM; ++h) {
      if (h >= G) break;
      const float l = ml_s[2 * h + 1];
#pragma unroll
      for (int i = 0; i < 8; ++i) ob[h * D + chunk * 8 + i] = l > 0.0f ? acc[h][i] / l : 0.0f;
    }
  }
  __syncthreads();
  if (kv.rot_d1) block_rotate(ob, G, D, g, kv.rot_d2, kv.rot_d1, kv.rot_inv_sqrt);  // Pi^T = D1 H D2 / sqrt(g)
  for (int e = threadIdx.x; e < G * D; e += kDThreads) a.out[(t * a.n_heads + kh * G) * D + e] = ob[e];
}

// Values of coordinates e0 .. e0 + 7 of a group, times the group's factor (any format): the decoded record.
// cent: the Lloyd-Max codebook (c.centroids or a copy in shared memory).
__device__ __forceinline__ void decoded8(const TqDeviceCodec& c, const float* cent, const uint8_t* r, int e0,
                                         float (&v)[8]) {
  float fa = 1.0f;
  if (c.scheme == kTqAffine) {
    if (c.bits == 8) values8<8, true>(c, r, e0, nullptr, v);
    else values8<4, true>(c, r, e0, nullptr, v);
    return;
  }
  switch (c.bits) {
    case 2: fa = values8<2, false>(c, r, e0, cent, v); break;
    case 3: fa = values8<3, false>(c, r, e0, cent, v); break;
    case 4: fa = values8<4, false>(c, r, e0, cent, v); break;
    default: fa = values8<5, false>(c, r, e0, cent, v); break;
  }
#pragma unroll
  for (int i = 0; i < 8; ++i) v[i] *= fa;
}

// Codes of coordinates e0 .. e0 + 7 of a group as their codebook values, exact in f16 (lloyd_max.h rounds the
// centroids to f16 values): cent_h, the codebook as halves in shared memory; eight halves as one uint4.
template <int BITS>
__device__ __forceinline__ uint4 codebook_halves8(const uint8_t* r, int e0, int plane_bytes, const __half* cent_h) {
  int code[8];
  codes8<BITS>(r, e0, plane_bytes, code);
  uint32_t h[4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
    h[i] = static_cast<uint32_t>(__half_as_ushort(cent_h[code[2 * i]])) |
           static_cast<uint32_t>(__half_as_ushort(cent_h[code[2 * i + 1]])) << 16;
  return make_uint4(h[0], h[1], h[2], h[3]);
}
__device__ __forceinline__ uint4 codebook_halves8(const TqDeviceCodec& c, const uint8_t* r, int e0,
                                                  const __half* cent_h) {
  const int pb = c.group_dim / 8;
  switch (c.bits) {
    case 2: return codebook_halves8<2>(r, e0, pb, cent_h);
    case 3: return codebook_halves8<3>(r, e0, pb, cent_h);
    case 4: return codebook_halves8<4>(r, e0, pb, cent_h);
    default: return codebook_halves8<5>(r, e0, pb, cent_h);
  }
}

// The records as a source of prefill_attention.cuh; the queries are rotated once per block and the outputs rotated
// back. (QJL keys stay on the decode kernel: their scores add a second dot with S q, which the tiles do not carry.)
// kCodes (Lloyd-Max K and V of one group a head, every default shape): a tile holds the codebook values, exact in
// f16, and the positions' scalars go to the kernel as column scales, so S and P x V take two MMAs a product like the
// f16 cache instead of three (the decoded f32 values' hi + lo parts), and a tile is half the bytes. Otherwise
// (affine records, several groups a head) a tile is decoded into f32 values in the rotated domain, each split into
// f16 hi + lo.
// Staged (when its area fits the block's shared memory: all but the largest records at head_dim 256): the tile's K
// and V records are first copied into the source's area with 16-byte cp.async (the decode kernel's segments), and
// the codebooks with them, so decoding reads shared memory (a second buffer, the next tile's copies issued before
// this one is decoded, gained nothing on the H100: decoding, not copying, is the cost). The records read straight from
// global memory cost 5-7 scattered byte or half loads per 8 values (5-bit planes, the scalar) plus 8 codebook loads.
template <bool kCodes>
struct TqPrefillSource {
  TqKvBlocks kv;
  static constexpr bool kLo = !kCodes, kAsync = false;  // decoded in place: one tile buffer
  static constexpr bool kColumnScales = kCodes;
  static constexpr bool kIdentityRotation = false;   // Pi on the queries, Pi^T on the outputs
  // A power of two: small decoded values' lo parts stay normal in f16 (codebook values need none).
  static constexpr float kValueScale = kCodes ? 1.0f : 16.0f;
  static constexpr bool kHasArea = true;       // smem_bytes() depends on the layer's record sizes
  static_assert(prefill::kThreads == kDThreads, "issue_tile hands segments to the decode kernel's warps");
  // The area: K records, V records (each with the segments' alignment slack), the offsets [2][kTile] (kNoRecord: a
  // released block's position), the two codebooks [2][32] (f32, or f16 with kCodes), with kCodes the tile's column
  // scales [2][kTile]; none of it when not staged (records read from global memory).
  int k_area = 0, v_area = 0;
  bool staged = false;
  __host__ __device__ unsigned offsets_at() const { return static_cast<unsigned>(k_area + v_area); }
  __host__ __device__ unsigned codebooks_at() const { return offsets_at() + 2 * prefill::kTile * 2; }
  __host__ __device__ unsigned scales_at() const { return codebooks_at() + 2 * 32 * 4; }
  __host__ __device__ unsigned smem_bytes() const {
    return staged ? scales_at() + (kCodes ? 2 * prefill::kTile * 4 : 0) : 0;
  }
  // The area's parts for kv's record sizes (host), when staged.
  static TqPrefillSource make(const TqKvBlocks& kv, bool staged) {
    TqPrefillSource s{kv};
    if (!staged) return s;
    static_assert(prefill::kTile == kDT, "the staged records' layout is a decode tile's");
    s.k_area = staged_records_bytes(kv.k.record_bytes, kv.block_tokens);
    s.v_area = staged_records_bytes(kv.v.record_bytes, kv.block_tokens);
    s.staged = true;
    return s;
  }
  // Whether kv's records take the kCodes form.
  static bool codes_apply(const TqKvBlocks& kv) {
    return kv.k.scheme == kTqLloydMax && kv.v.scheme == kTqLloydMax && !kv.k.qjl && kv.k.n_groups == 1 &&
           kv.v.n_groups == 1;
  }
  __device__ const float* column_scales(unsigned char* area) const {
    return reinterpret_cast<const float*>(area + scales_at());
  }

  __device__ void stage(int64_t j0, int64_t j_hi, int64_t kh, const prefill::Tiles& t, int ld, unsigned char* area,
                        bool first) const {
    const int B = static_cast<int>(kv.block_tokens);
    const int D = static_cast<int>(kv.head_dim), chunks = D / 8, log_g = __ffs(kv.k.group_dim) - 1;
    const int per_side = prefill::kTile * chunks;
    const int j0i = static_cast<int>(j0), j_hii = static_cast<int>(min(j_hi, int64_t{INT32_MAX}));
    const int n = max(0, min(prefill::kTile, j_hii - j0i + 1));  // positions of the tile with records to read
    uint8_t* kbuf = area;
    uint8_t* vbuf = kbuf + k_area;
    uint16_t* koff = reinterpret_cast<uint16_t*>(area + offsets_at());
    uint16_t* voff = koff + prefill::kTile;
    float* cent = reinterpret_cast<float*>(area + codebooks_at());  // [K 32][V 32]
    __half* cent_h = reinterpret_cast<__half*>(cent);               // kCodes: [K 32][V 32] halves
    if (staged) {
      if (first && threadIdx.x < 64) {
        const TqDeviceCodec& c = threadIdx.x < 32 ? kv.k : kv.v;
        const int i = threadIdx.x & 31;
        const float x = c.scheme == kTqLloydMax && i < (1 << c.bits) ? c.centroids[i] : 0.0f;
        if constexpr (kCodes) cent_h[threadIdx.x] = __float2half_rn(x);  // exact: f16 values
        else cent[threadIdx.x] = x;
      }
      // Every thread calls issue_tile: a warp per segment.
      issue_tile<true>(kv, kh, j0, n, kbuf, vbuf, koff, voff);
      async_commit();
      async_wait<0>();
      __syncthreads();
    }
    // The record of row r (K or V) of the tile, or null (past j_hi, a released block).
    auto record = [&](int r, bool is_v) -> const uint8_t* {
      if (staged) {
        const unsigned off = r < n ? (is_v ? voff : koff)[r] : kNoRecord;
        return off != kNoRecord ? (is_v ? vbuf : kbuf) + off : nullptr;
      }
      if (r >= n) return nullptr;
      const int j = j0i + r, jb = j / B;
      const uint8_t* block = kv.blocks[jb];
      return block ? record_at(kv, block, kh, j - jb * B, is_v) : nullptr;
    };
    for (int e = threadIdx.x; e < 2 * per_side; e += blockDim.x) {
      const bool is_v = e >= per_side;
      const int es = is_v ? e - per_side : e, r = es / chunks, d0 = (es - r * chunks) * 8;
      const TqDeviceCodec& c = is_v ? kv.v : kv.k;
      const uint8_t* rec = record(r, is_v);
      __half* hi = (is_v ? t.v_hi : t.k_hi) + r * ld + d0;  // 16-byte aligned: rows of head_dim + 8 halves
      if constexpr (kCodes) {
        // Staged whenever kCodes applies: a group a head's records are small.
        *reinterpret_cast<uint4*>(hi) =
            rec ? codebook_halves8(c, rec, d0, cent_h + (is_v ? 32 : 0)) : make_uint4(0, 0, 0, 0);
      } else {
        float v8[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        const float* cb = staged ? cent + (is_v ? 32 : 0) : c.centroids;
        if (rec) decoded8(c, cb, rec + (d0 >> log_g) * c.group_bytes, d0 & (c.group_dim - 1), v8);
        __half* lo = (is_v ? t.v_lo : t.k_lo) + r * ld + d0;
        prefill::split8(v8, kValueScale, hi, lo);
      }
    }
    if constexpr (kCodes) {  // the positions' scalars (one group: at scalar_offset), 0 where no record
      float* scales = reinterpret_cast<float*>(area + scales_at());
      for (int e = threadIdx.x; e < 2 * prefill::kTile; e += blockDim.x) {
        const bool is_v = e >= prefill::kTile;
        const uint8_t* rec = record(e & (prefill::kTile - 1), is_v);
        scales[e] = rec ? load_half(rec + (is_v ? kv.v : kv.k).scalar_offset) : 0.0f;
      }
    }
  }
  __device__ void rotate(float* rows, int n, int d, bool inverse) const {
    if (!kv.rot_d1) return;
    if (inverse) block_rotate(rows, n, d, kv.k.group_dim, kv.rot_d2, kv.rot_d1, kv.rot_inv_sqrt);  // Pi^T
    else block_rotate(rows, n, d, kv.k.group_dim, kv.rot_d1, kv.rot_d2, kv.rot_inv_sqrt);
  }
};

void check_codec(const TqDeviceCodec& c, const TqKvBlocks& kv, const char* what) {
  const bool ok = (c.scheme == kTqLloydMax && c.bits >= 2 && c.bits <= 5 && c.centroids && c.boundaries) ||
                  (c.scheme == kTqAffine && (c.bits == 4 || c.bits == 8) && !c.qjl);
  if (!ok || c.group_dim < 16 || c.group_dim > kMaxG || (c.group_dim & (c.group_dim - 1)) != 0 ||
      c.group_dim * c.n_groups != kv.head_dim || (c.qjl && !c.qjl_matrix) || c.record_bytes % 2 != 0 ||
      c.group_dim != kv.k.group_dim)
    throw Error(ErrorKind::internal, "cuda TurboQuant", std::string("unsupported device codec for ") + what);
}

}  // namespace

void tq_kv_write(const TqKvBlocks& kv, const float* k, const float* v, int64_t n, const int32_t* positions,
                 cudaStream_t stream) {
  if (n == 0) return;
  check_codec(kv.k, kv, "K");
  check_codec(kv.v, kv, "V");
  if (kv.v.qjl) throw Error(ErrorKind::internal, "cuda TurboQuant", "QJL is for keys only");
  EncodeParams a{};
  a.kv = kv;
  a.k = k;
  a.v = v;
  a.positions = positions;
  a.n = n;
  a.lambda0 = 1.0 - turboquant::kAngleSpan;
  for (int s = 0; s < kScales; ++s) a.lambda[s] = s > 0 ? turboquant::angle_scale(s) : 0.0f;
  const int64_t jobs = n * kv.n_kv_heads * 2 * kv.k.n_groups;  // a block each
  launch_chained("TurboQuant KV write", tq_encode_kernel, static_cast<unsigned>(jobs), kEncWarps * 32, 0, stream, a);
}

namespace {
std::atomic<int64_t>& tq_tiled_choice() {
  static std::atomic<int64_t> n{[] {
    const char* env = std::getenv("LMLAB_TQ_TILED_DECODE_MIN_POSITIONS");
    return env ? std::max<int64_t>(0, std::atoll(env)) : kTqTiledDecodeOff;
  }()};
  return n;
}

// The records' source for prefill_attention.cuh, passed to f(src, staged): the codes form where it applies (staged);
// the decoded form staged where the block's shared memory holds the records, or read from global memory where it
// does not (8-bit affine at head_dim 256, whose tiles and query leave
// too little).
template <class F>
void with_prefill_source(const TqKvBlocks& kv, F&& f) {
  const DecodeOptions o = decode_options();
  auto staged = [&](auto codes) {
    using Source = TqPrefillSource<decltype(codes)::value>;
    const Source s = Source::make(kv, true);
    if (prefill::block_smem_bytes(kv.head_dim, s) > kMaxPrefillSmem) return false;
    f(s, true);
    return true;
  };
  if (o.tq_prefill_codes && TqPrefillSource<true>::codes_apply(kv) && staged(std::true_type{})) return;
  if (!staged(std::false_type{})) f(TqPrefillSource<false>::make(kv, false), false);
}
// The splits' partial outputs (rotated domain) of `rows` (query, head) pairs merged into out and rotated back: the
// decode kernels' and the tiled decode's (merging then rotating equals rotating each split: Pi^T is linear).
void merge_rotated_splits(const TqKvBlocks& kv, const float* part_o, const float* part_ml, float* out, int64_t rows,
                          int splits, cudaStream_t stream) {
  if (splits <= 1) return;
  // The merge by warps where a lane's D / 32 dims are a power of two within one group; tq_merge_kernel elsewhere
  // (head_dim 96, ...).
  const int D = static_cast<int>(kv.head_dim), g = kv.k.group_dim;
  if ((D == 64 || D == 128 || D == 256) && g >= D / 32) {
    auto launch = [&](auto kernel) {
      launch_chained("TurboQuant attention (merge splits, warps)", kernel, static_cast<unsigned>(rows),
                     kMergeWarps * 32, 0, stream, part_o, part_ml, out, splits, g, kv.rot_d1, kv.rot_d2,
                     kv.rot_inv_sqrt);
    };
    if (D == 64) launch(tq_merge_warps_kernel<64>);
    else if (D == 128) launch(tq_merge_warps_kernel<128>);
    else launch(tq_merge_warps_kernel<256>);
    return;
  }
  launch_chained("TurboQuant attention (merge splits)", tq_merge_kernel, static_cast<unsigned>(rows), kMergeThreads,
                 0, stream, part_o, part_ml, out, static_cast<int>(kv.head_dim), splits, kv.k.group_dim, kv.rot_d1,
                 kv.rot_d2, kv.rot_inv_sqrt);
}

// How many of a one-token decode's splits start late (tq_splits.h; `chosen` > 0: DecodeOptions::tq_late_splits): an
// encode block keeps every decode block off its SM until it ends (measured; most likely because the decode's blocks,
// 4 to an SM, need a larger shared-memory configuration than an SM running the encode has), and those are the last
// to launch, a split of every KV head at a time. The encode's blocks are K and V of each group of each KV head
// (tq_kv_write): 2 n_groups splits per decode block an SM holds. (Counted from the registers alone, 2 of the 4 would
// fit beside an encode block: those 4 late splits measured as the even ones; 8 took the 8B step's encode cost from
// 4.6 / 5.0 to 0.8 / 1.2 us at 40K / 100K, H100, twenty-eighth session.)
int late_decode_splits(const TqKvBlocks& kv, int splits, int chosen) {
  const int64_t per_sm = attention_target_blocks() / multiprocessor_count();
  const int64_t late = chosen > 0 ? chosen : 2 * kv.k.n_groups * per_sm;
  return late < splits ? static_cast<int>(late) : 0;
}

// The CUDA-core decode kernel (formats or groups the tensor-core one does not take).
void launch_cuda_core_decode(const TqAttnParams& a, const DecodeLayout& dl, int splits, int64_t n_q,
                             cudaStream_t stream) {
  const TqKvBlocks& kv = a.kv;
  const int G = a.group;
  DecodeArgs da{a, dl};
  const dim3 grid(static_cast<unsigned>(kv.n_kv_heads), static_cast<unsigned>(splits), static_cast<unsigned>(n_q));
  const size_t smem = static_cast<size_t>(dl.total);
  auto launch = [&](auto kernel) {
    if (smem > kMaxSmem)
      lmlab::cuda::check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                              static_cast<int>(smem)),
                         "TurboQuant attention shared memory");
    launch_chained("TurboQuant attention", kernel, grid, kDThreads, smem, stream, da);
  };
  const bool qjl = kv.k.qjl != 0;
  auto by_group = [&](auto min_blocks) {
    constexpr int MB = decltype(min_blocks)::value;
    if (G <= 1) qjl ? launch(tq_decode_kernel<true, 1, MB>) : launch(tq_decode_kernel<false, 1, MB>);
    else if (G <= 2) qjl ? launch(tq_decode_kernel<true, 2, MB>) : launch(tq_decode_kernel<false, 2, MB>);
    else if (G <= 4) qjl ? launch(tq_decode_kernel<true, 4, MB>) : launch(tq_decode_kernel<false, 4, MB>);
    else qjl ? launch(tq_decode_kernel<true, 8, MB>) : launch(tq_decode_kernel<false, 8, MB>);
  };
  const int min_blocks = decode_options().tq_decode_min_blocks;
  if (min_blocks >= 8) by_group(std::integral_constant<int, 8>{});
  else if (min_blocks >= 6) by_group(std::integral_constant<int, 6>{});
  else by_group(std::integral_constant<int, 0>{});  // 0: no minimum (95 registers for G = 4)
}

}  // namespace

bool tq_decode_on_tensor_cores(const TqKvBlocks& kv, int64_t group) {
  return group >= decode_options().tq_decode_mma_min_group && group <= 8 && decode_mma_supports(kv);
}

int64_t tq_tiled_decode_min_positions() { return tq_tiled_choice().load(std::memory_order_relaxed); }
void set_tq_tiled_decode_min_positions(int64_t n) { tq_tiled_choice().store(n, std::memory_order_relaxed); }

void tq_attention(const TqKvBlocks& kv, const float* q, float* out, int64_t n_q, int64_t n_heads,
                  const int32_t* positions, int64_t n_kv_bound, float scale, float softcap, int64_t window,
                  int max_splits, void* scratch, cudaStream_t stream, bool after_encode) {
  if (n_q == 0) return;
  const int64_t D = kv.head_dim, G = n_heads / kv.n_kv_heads;
  if (G > kMaxGroup || D > 256 || G * kv.n_kv_heads != n_heads)
    throw Error(ErrorKind::unsupported, "cuda attention",
                "needs n_heads a multiple of n_kv_heads with at most 8 query heads per KV head and head_dim <= 256");
  check_codec(kv.k, kv, "K");
  check_codec(kv.v, kv, "V");
  const int64_t n_kv = window > 0 ? std::min(window, n_kv_bound) : n_kv_bound;
  const bool chunk = n_q >= kPrefillAttentionMinQueries;
  bool tiled = false;
  if (!kv.k.qjl)
    with_prefill_source(kv, [&](const auto& src, bool staged) {
      tiled = chunk || (staged && D % 16 == 0 && n_kv_bound >= tq_tiled_decode_min_positions());
      if (!tiled) return;
      prefill::Params p{q, out, positions, n_q, n_heads, kv.n_kv_heads, D, window, static_cast<int>(G), 0, scale,
                        softcap};
      if (!chunk) prefill::split_for_decode(p, src, n_kv, max_splits, scratch);
      prefill::launch(p, src, stream);
      merge_rotated_splits(kv, p.part_o, p.part_ml, out, n_q * n_heads, p.splits, stream);
    });
  if (tiled) return;
  TqAttnParams a{};
  a.kv = kv;
  a.q = q;
  a.out = out;
  a.positions = positions;
  a.n_heads = n_heads;
  a.window = window;
  a.group = static_cast<int>(G);
  a.scale = scale;
  a.softcap = softcap;
  const DecodeOptions opts = decode_options();  // read once: the choices below agree with one another
  a.after_encode = after_encode && opts.tq_early_start && chained_launches();
  // head_dim <= 256 and at most 8-bit records keep the layout under ~90 KB (head_dim 256, GQA 8, affine int8).
  const DecodeLayout dl = decode_layout(kv, static_cast<int>(G));
  if (static_cast<size_t>(dl.total) > kMaxDecodeSmem)
    throw Error(ErrorKind::unsupported, "cuda TurboQuant attention", "records too large for shared memory");
  const bool on_tensor_cores = tq_decode_on_tensor_cores(kv, G);
  const bool warps = on_tensor_cores && opts.tq_decode_warps && decode_warps_supports(kv);
  const int splits = decode_split_count(attention_target_blocks(), n_q * kv.n_kv_heads, n_kv, kDMinSplitPositions,
                                       max_splits, n_q, n_heads, D);
  a.part_o = static_cast<float*>(scratch);
  a.part_ml = a.part_o + n_q * n_heads * splits * D;
  if (warps && a.after_encode && n_q == 1 && opts.tq_late_positions > 0) {
    a.late_splits = late_decode_splits(kv, splits, opts.tq_late_splits);
    a.late_shortfall = opts.tq_late_positions;
  }
  if (on_tensor_cores) {
    if (warps) decode_warps(a, splits, n_q, stream);
    else decode_mma(a, splits, n_q, stream);
  } else {
    launch_cuda_core_decode(a, dl, splits, n_q, stream);
  }
  merge_rotated_splits(kv, a.part_o, a.part_ml, out, n_q * n_heads, splits, stream);
}

}  // namespace lmlab::kernels::cuda
