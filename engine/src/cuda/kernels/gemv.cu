// Decode GEMV: y[t] = x[t] . W^T for a few tokens, W in its stored format, read once for all of them.
//
// Decode is a stream over the weights, so the kernel is built to keep HBM busy and to spend few instructions
// per weight byte:
// - a warp takes kRows rows; a lane takes a 16-byte slice ("unit" column range) of each and loads kStages
//   units of all its rows before using the first, so every lane has kRows * kStages loads in flight, and the
//   kernel stays under 128 registers so two blocks (16 warps) share an SM;
// - when rows alone give too few warps (k/v projections, MoE experts, small models), the warps of a block split
//   the columns of the same rows and sum through shared memory (no second kernel, no partials in memory);
// - 4- and 8-bit MLX affine weights take integer dot products: the lane turns its 32 x values into int16 with
//   one scale (float -> int by the 1.5 * 2^23 magic add, two to a register by a byte permute) and multiplies
//   them with the packed codes by dp2a (two 16 x 8-bit products per instruction, nibbles unpacked two words at
//   a time by masks). y = scale_x * (s * sum(q xq) + b * sum(xq)): int16 keeps x to 2^-15 of its 32-block
//   maximum, the precision of the CPU's integer path (docs/quantization.md). The bias term takes the same
//   rounded x, so the error is that of x's rounding through the dequantized weights s q + b (with exact x
//   there, it went through s q alone, whose values are not centred: ~2x the error on real weights).
//   The float path (mask, 2^23 magic, FMA per value and row) cost ~4 instructions per value and row.
// - other bit widths and dense f32/f16/bf16 convert each value once and FMA it per token.
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdlib>
#include <string>

#include "cuda/cuda_check.h"
#include "cuda/kernels/chained_launch.cuh"
#include "cuda/kernels/gated_activation.cuh"
#include "cuda/kernels/gemv.cuh"
#include "cuda/kernels/kernels_cuda.h"
#include "cuda/kernels/reduce.cuh"
#include "cuda/kernels/route_token.cuh"
#include "cuda/kernels/weight_access.cuh"

namespace lmlab::kernels::cuda {

namespace {

constexpr int kWarps = 8;   // per block
constexpr int kRows = 4;    // rows per warp

// ---- weight formats: one lane's share of one unit of one row ----

// q < 2^23 as a float without the integer-to-float conversion (quarter rate on Hopper).
__device__ __forceinline__ float small_uint_to_float(uint32_t q) {
  return __uint_as_float(0x4B000000u | q) - 8388608.0f;
}

// x of one shared-memory block: int16 pairs in quads of words, quad-major ([4][nb] int4: lane l reads quad k of
// block b at k * nb + b, four 16-byte loads, conflict-free), then (scale, sum of the int16 values) per 32-value
// block, for each token.
struct SharedX {
  const int4* xq;
  const float2* xs;
  int64_t nb;  // 32-value blocks per token
};

template <WeightType T>
struct Dense {
  static constexpr int kValues = T == WeightType::f32 ? 4 : 8;  // 16 bytes
  static constexpr int kStages = 2;                              // units per row loaded ahead of use
  static constexpr bool kSharedX = false;
  static constexpr bool kIntX = false;  // x as int16 (the 4/8-bit integer paths)
  static constexpr int kBits = 0;
  struct Raw {
    uint4 v;
  };
  const uint8_t* base;
  int64_t cols;
  __device__ Dense(const DeviceWeight& w) : base(static_cast<const uint8_t*>(w.dense)), cols(w.cols) {}
  __device__ void load(int r, int c, Raw& raw) const {
    raw.v = __ldg(reinterpret_cast<const uint4*>(base + (r * cols + c) * (T == WeightType::f32 ? 4 : 2)));
  }
  __device__ static void to_float(const Raw& raw, float (&f)[kValues]) {
    const uint32_t u[4] = {raw.v.x, raw.v.y, raw.v.z, raw.v.w};
    if constexpr (T == WeightType::f32) {
#pragma unroll
      for (int i = 0; i < 4; ++i) f[i] = __uint_as_float(u[i]);
    } else if constexpr (T == WeightType::bf16) {
#pragma unroll
      for (int i = 0; i < 4; ++i) f[2 * i] = __uint_as_float(u[i] << 16), f[2 * i + 1] = __uint_as_float(u[i] & 0xFFFF0000u);
    } else {
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const float2 p = __half22float2(*reinterpret_cast<const __half2*>(&u[i]));
        f[2 * i] = p.x, f[2 * i + 1] = p.y;
      }
    }
  }
  // acc[j][t] += row j . x[t] over the lane's kValues columns from c.
  template <int NT>
  __device__ void dot(const Raw (&raw)[kRows], const float* x, const SharedX&, int c, int n,
                      float (&acc)[kRows][NT]) const {
    float wf[kRows][kValues];
#pragma unroll
    for (int j = 0; j < kRows; ++j) to_float(raw[j], wf[j]);
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      if (t >= n) break;
      const float4* xv = reinterpret_cast<const float4*>(x + t * cols + c);
#pragma unroll
      for (int i = 0; i < kValues / 4; ++i) {
        const float4 xx = xv[i];
#pragma unroll
        for (int j = 0; j < kRows; ++j)
          acc[j][t] += wf[j][4 * i] * xx.x + wf[j][4 * i + 1] * xx.y + wf[j][4 * i + 2] * xx.z + wf[j][4 * i + 3] * xx.w;
      }
    }
  }
};

// How an affine kernel takes x: f32 values and float dequantization (small matrices, other widths), or int16
// with dp2a (4/8-bit matrices of at least kIntMinWeights), quantized by each lane for its unit (XMode::lane) or
// once per block into shared memory (XMode::shared: no repeated work per warp, and the loop's x reads are
// shared-memory loads instead of L1/L2 round trips on the critical path).
enum class XMode { f32, lane, shared };

// Below this many weights the float path serves 4/8-bit matrices, as the CPU's integer path (weights/
// linear_affine.cpp, kIntegerMinWeights) does: small matrices are not bound by reading their weights, and their
// results stay at f32 accuracy (the MoE router picks experts by these logits; a near tie flipped by the int16
// rounding of x changed a golden fixture's logit by 0.6).
constexpr int64_t kIntMinWeights = int64_t{1} << 20;

// 32 values of x as int16 with one scale (float -> int by the 1.5 * 2^23 magic add), two to a register in the order
// BITS-bit codes come: 4-bit word k holds values 8k..8k+7 at bits 4i, so its bytes' low nibbles are values 8k, +2,
// +4, +6 and their high nibbles +1, +3, +5, +7; 8-bit word k holds values 4k..4k+3, one byte each.
template <int BITS>
__device__ __forceinline__ void quantize_x32(const float (&xf)[32], int (&xp)[16], float& xscale, float& qsum) {
  float amax = 0.0f;
#pragma unroll
  for (int i = 0; i < 32; ++i) amax = fmaxf(amax, fabsf(xf[i]));
  const float inv = amax > 0.0f ? 32767.0f / amax : 0.0f;
  xscale = amax * (1.0f / 32767.0f);
  constexpr float kMagic = 12582912.0f;  // 1.5 * 2^23: the low 16 bits of x * inv + kMagic are round(x * inv)
  uint32_t u[32];
  qsum = 0.0f;  // exact: |sum| < 2^20
#pragma unroll
  for (int i = 0; i < 32; ++i) {
    const float m = fmaf(xf[i], inv, kMagic);
    u[i] = __float_as_uint(m);
    qsum += m - kMagic;
  }
  auto pair = [&](int a, int c) { return static_cast<int>(__byte_perm(u[a], u[c], 0x5410)); };
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    const int v = 8 * k;
    if constexpr (BITS == 4) {
      xp[4 * k] = pair(v, v + 2), xp[4 * k + 1] = pair(v + 4, v + 6);
      xp[4 * k + 2] = pair(v + 1, v + 3), xp[4 * k + 3] = pair(v + 5, v + 7);
    } else {
      xp[4 * k] = pair(v, v + 1), xp[4 * k + 1] = pair(v + 2, v + 3);
      xp[4 * k + 2] = pair(v + 4, v + 5), xp[4 * k + 3] = pair(v + 6, v + 7);
    }
  }
}

// dp2a with signed 16-bit x and unsigned bytes: the 4-bit path's high nibbles stay in place (16 q, bytes up to
// 0xF0, which the signed form would read as negative).
__device__ __forceinline__ int dp2a_lo_u8(int x, uint32_t w, int acc) {
  int d;
  asm("dp2a.lo.s32.u32 %0, %1, %2, %3;" : "=r"(d) : "r"(x), "r"(w), "r"(acc));
  return d;
}
__device__ __forceinline__ int dp2a_hi_u8(int x, uint32_t w, int acc) {
  int d;
  asm("dp2a.hi.s32.u32 %0, %1, %2, %3;" : "=r"(d) : "r"(x), "r"(w), "r"(acc));
  return d;
}

// acc[j] += xscale * (s_j * sum(q x) + b_j * sum(x)) over 32 values, x as quantize_x32 gives it: the bias term
// takes the same rounded x, so the error is x's rounding through the dequantized weights s q + b.
// 4-bit: the high nibbles are multiplied in place (w & 0xF0F0F0F0 = 16 q: no shift per word) into their own sum,
// which is then a multiple of 16 (|sum| <= 32 * 32767 * 240 < 2^31); the two sums are those of the shifted form
// exactly.
template <int BITS, int R>
__device__ __forceinline__ void int_rows(const uint32_t (&w)[R][BITS], const int (&xp)[16], float xscale, float qsum,
                                         const float (&s)[R], const float (&b)[R], float (&out)[R]) {
#pragma unroll
  for (int j = 0; j < R; ++j) {
    int isum = 0;
    if constexpr (BITS == 4) {
      int hsum = 0;  // 16 x the high nibbles' products
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        const uint32_t lo = w[j][k] & 0x0F0F0F0Fu, hi16 = w[j][k] & 0xF0F0F0F0u;
        isum = dp2a_lo_u8(xp[4 * k], lo, isum);
        isum = dp2a_hi_u8(xp[4 * k + 1], lo, isum);
        hsum = dp2a_lo_u8(xp[4 * k + 2], hi16, hsum);
        hsum = dp2a_hi_u8(xp[4 * k + 3], hi16, hsum);
      }
      isum += hsum >> 4;  // exact: hsum is a multiple of 16
      out[j] += xscale * (s[j] * static_cast<float>(isum) + b[j] * qsum);
    } else {
      // Codes as signed q - 128 (dp2a's bytes are signed): sum(q xq) = sum((q - 128) xq) + 128 sum(xq).
#pragma unroll
      for (int k = 0; k < 8; ++k) {
        const int v = static_cast<int>(w[j][k] ^ 0x80808080u);
        isum = __dp2a_lo(xp[2 * k], v, isum);
        isum = __dp2a_hi(xp[2 * k + 1], v, isum);
      }
      out[j] += xscale * (s[j] * (static_cast<float>(isum) + 128.0f * qsum) + b[j] * qsum);
    }
  }
}

// How a kernel reads a group's scale and bias: as the stored type, fixed at compile time (the integer paths: a
// runtime switch per row and unit put branches and two load forms into the hot loop, ~10% of its instructions),
// or as the weight says at run time (the float path: small matrices and other widths).
enum class ScaleRead { f32, f16, bf16, runtime };

// MLX affine: a lane's unit is 32 values of one group (group_size is a multiple of 32; a power of two on the
// integer paths, whose group index is a shift: a 64-bit division per unit was ~8% of the loop's instructions).
template <int BITS, XMode MODE, ScaleRead SR>
struct Affine {
  static constexpr int kValues = 32;
  static constexpr bool kSharedX = MODE == XMode::shared;
  static constexpr bool kIntX = MODE != XMode::f32;
  static constexpr int kBits = BITS;
  // Registers: the lane-quantized x of a unit, or 8-bit codes, take what a second stage would.
  static constexpr int kStages = MODE == XMode::lane || BITS > 4 ? 1 : 2;
  struct Raw {
    uint32_t w[BITS];
    uint32_t s, b;  // the group's scale and bias as stored (converted at use, so the loads stay in flight)
  };
  AffineWeight q;
  int64_t words_per_row, groups;
  int group_shift;  // log2(group_size) on the integer paths
  __device__ Affine(const DeviceWeight& w)
      : q(w.quant), words_per_row(w.cols * BITS / 32), groups(w.cols / w.quant.group_size),
        group_shift(0) {
    while ((1 << group_shift) < w.quant.group_size) ++group_shift;
  }

  // The group of column c within its row.
  __device__ int group_of(int c) const { return SR == ScaleRead::runtime ? c / q.group_size : c >> group_shift; }
  __device__ bool f32_scales() const {
    return SR == ScaleRead::f32 || (SR == ScaleRead::runtime && q.scale_type == ScaleType::f32);
  }
  __device__ void load(int r, int c, Raw& raw) const {
    const uint32_t* p = q.packed + r * words_per_row + (c >> 5) * BITS;
    if constexpr (BITS % 4 == 0) {
#pragma unroll
      for (int i = 0; i < BITS / 4; ++i) {
        const uint4 v = __ldg(reinterpret_cast<const uint4*>(p) + i);
        raw.w[4 * i] = v.x, raw.w[4 * i + 1] = v.y, raw.w[4 * i + 2] = v.z, raw.w[4 * i + 3] = v.w;
      }
    } else if constexpr (BITS % 2 == 0) {
#pragma unroll
      for (int i = 0; i < BITS / 2; ++i) {
        const uint2 v = __ldg(reinterpret_cast<const uint2*>(p) + i);
        raw.w[2 * i] = v.x, raw.w[2 * i + 1] = v.y;
      }
    } else {
#pragma unroll
      for (int i = 0; i < BITS; ++i) raw.w[i] = __ldg(p + i);
    }
    const int64_t g = r * groups + group_of(c);
    if (f32_scales()) {
      raw.s = __ldg(static_cast<const uint32_t*>(q.scales) + g), raw.b = __ldg(static_cast<const uint32_t*>(q.biases) + g);
    } else {
      raw.s = __ldg(static_cast<const uint16_t*>(q.scales) + g), raw.b = __ldg(static_cast<const uint16_t*>(q.biases) + g);
    }
  }
  __device__ float scale_value(uint32_t v) const {
    const ScaleType t = SR == ScaleRead::runtime ? q.scale_type
                        : SR == ScaleRead::bf16  ? ScaleType::bf16
                        : SR == ScaleRead::f16   ? ScaleType::f16
                                                 : ScaleType::f32;
    switch (t) {
      case ScaleType::bf16: return __uint_as_float(v << 16);
      case ScaleType::f16: return __half2float(__ushort_as_half(static_cast<uint16_t>(v)));
      default: return __uint_as_float(v);
    }
  }

  template <int NT>
  __device__ void dot(const Raw (&raw)[kRows], const float* x, const SharedX& sx, int c, int n,
                      float (&acc)[kRows][NT]) const {
    float s[kRows], b[kRows];
    uint32_t w[kRows][BITS];
#pragma unroll
    for (int j = 0; j < kRows; ++j) {
      s[j] = scale_value(raw[j].s), b[j] = scale_value(raw[j].b);
#pragma unroll
      for (int i = 0; i < BITS; ++i) w[j][i] = raw[j].w[i];
    }
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      if (t >= n) break;
      float out[kRows] = {};
      if constexpr (MODE == XMode::shared) {
        const int blk = c >> 5;
        const int4* xq = sx.xq + t * 4 * sx.nb + blk;
        int xp[16];
#pragma unroll
        for (int k = 0; k < 4; ++k) {
          const int4 v = xq[k * sx.nb];
          xp[4 * k] = v.x, xp[4 * k + 1] = v.y, xp[4 * k + 2] = v.z, xp[4 * k + 3] = v.w;
        }
        const float2 sc = sx.xs[t * sx.nb + blk];
        int_rows<BITS, kRows>(w, xp, sc.x, sc.y, s, b, out);
      } else {
        float xf[32];
        const float4* xv = reinterpret_cast<const float4*>(x + t * q.cols + c);
#pragma unroll
        for (int i = 0; i < 8; ++i) {
          const float4 v = xv[i];
          xf[4 * i] = v.x, xf[4 * i + 1] = v.y, xf[4 * i + 2] = v.z, xf[4 * i + 3] = v.w;
        }
        if constexpr (MODE == XMode::lane) {
          int xp[16];
          float xscale, qsum;
          quantize_x32<BITS>(xf, xp, xscale, qsum);
          int_rows<BITS, kRows>(w, xp, xscale, qsum, s, b, out);
        } else {
          float xsum = 0.0f, qx[kRows] = {};
#pragma unroll
          for (int i = 0; i < 32; ++i) {
            constexpr uint32_t mask = (1u << BITS) - 1u;
            const int bit = i * BITS, word = bit >> 5, off = bit & 31;
            xsum += xf[i];
#pragma unroll
            for (int j = 0; j < kRows; ++j) {
              uint32_t v = w[j][word] >> off;
              if (off + BITS > 32) v |= w[j][word + 1] << (32 - off);
              qx[j] += small_uint_to_float(v & mask) * xf[i];
            }
          }
#pragma unroll
          for (int j = 0; j < kRows; ++j) out[j] = s[j] * qx[j] + b[j] * xsum;
        }
      }
#pragma unroll
      for (int j = 0; j < kRows; ++j) acc[j][t] += out[j];
    }
  }
};

// Shared-memory bytes of XMode::shared's x for NT tokens of `cols`; with the input's norm (one token), the normed
// f32 row after it, 16-byte aligned.
__host__ __device__ constexpr int64_t shared_x_bytes(int64_t cols, int nt) { return nt * (cols / 32) * (16 * 4 + 8); }
__host__ __device__ constexpr int64_t normed_x_offset(int64_t cols) { return (shared_x_bytes(cols, 1) + 15) / 16 * 16; }
__host__ __device__ constexpr int64_t shared_bytes(int64_t cols, int nt, bool norm) {
  return norm ? normed_x_offset(cols) + cols * 4 : shared_x_bytes(cols, nt);
}
// Without the opt-in for more, a block's shared memory stops at 48 KiB, the kernel's static arrays (the row sums,
// block_sum's partials: ~1.2 KiB at 8 tokens) included.
constexpr int64_t kMaxSharedXBytes = 46 * 1024;
constexpr bool shared_x_fits(int64_t cols, int nt, bool norm) {
  return shared_bytes(cols, nt, norm) <= kMaxSharedXBytes;
}

// A single token's x normed into shared memory for the fill below: xn = x / sqrt(mean(x^2) + eps) * w (rmsnorm's
// formula), x read from memory once. (Normed inside the fill, the fill's registers on top of the weight loads in
// flight spilled.)
__device__ void norm_into_shared(const float* x, int64_t cols, const float* w, float eps, float* xn) {
  const float4* xv = reinterpret_cast<const float4*>(x);
  float4* nv = reinterpret_cast<float4*>(xn);
  float ss = 0.0f;
  for (int64_t i = threadIdx.x; i < cols / 4; i += blockDim.x) {
    const float4 v = xv[i];
    nv[i] = v;
    ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
  }
  const float inv = rsqrtf(block_sum(ss) / static_cast<float>(cols) + eps);
  const float4* wv = reinterpret_cast<const float4*>(w);
  for (int64_t i = threadIdx.x; i < cols / 4; i += blockDim.x) {  // the elements this thread stored
    const float4 v = nv[i], ww = wv[i];
    nv[i] = make_float4(v.x * inv * ww.x, v.y * inv * ww.y, v.z * inv * ww.z, v.w * inv * ww.w);
  }
  __syncthreads();
}

// Fills the block's SharedX from x[0..n) (cols values each): a thread per 32-value block. (Eight threads per
// block, a float4 and three shuffles each, measured slower on long rows: the 12288-column down projection went
// from 20.2 to 25.9 us, its rounds of loads one after another.)
template <int BITS>
__device__ void fill_shared_x(const float* x, int64_t cols, int n, int4* xq, float2* xs) {
  const int64_t nb = cols / 32;
  for (int64_t i = threadIdx.x; i < n * nb; i += blockDim.x) {
    const int64_t t = i / nb, blk = i % nb;
    const float4* xv = reinterpret_cast<const float4*>(x + t * cols + blk * 32);
    float xf[32];
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      const float4 v = xv[k];
      xf[4 * k] = v.x, xf[4 * k + 1] = v.y, xf[4 * k + 2] = v.z, xf[4 * k + 3] = v.w;
    }
    int xp[16];
    float xscale, qsum;
    quantize_x32<BITS>(xf, xp, xscale, qsum);
#pragma unroll
    for (int k = 0; k < 4; ++k) xq[(t * 4 + k) * nb + blk] = make_int4(xp[4 * k], xp[4 * k + 1], xp[4 * k + 2], xp[4 * k + 3]);
    xs[t * nb + blk] = make_float2(xscale, qsum);
  }
}

struct GemvParams {
  GemvPart parts[kMaxGemvParts];  // weights over the same x (q, k, v; gate, up): same format and cols
  int n_parts;
  const int32_t* experts;  // gathered: [n_slots], else null
  const float* x;
  int64_t x_div;  // gathered: slot s reads x row s / x_div
  int64_t n_slots;
  int n;       // tokens (1 when gathered)
  int ksplit;  // warps of a block sharing rows, splitting the columns
  // A gated pair (parts[0] the gate, parts[1] the up projection): each warp takes rows i, i + 1 of both, and the
  // block writes act(gate . x) * (up . x) into parts[0].y, the activation's launch saved.
  bool gated_pair;
  GateActivation act;
  RouteTail route;  // route.done set: the MoE router, routed by the launch's last block
  GemvFusion fusion;  // the input's RMSNorm (shared-x kernels only) and the output's residual add
};

// The block's part, slot, weight (the slot's expert), x row and y; w_hi: the weight of a warp's upper kRows / 2 rows
// (the up projection of a gated pair, else w).
struct Target {
  DeviceWeight w, w_hi;
  const float* x;
  float* y;
};
template <bool kPair = false>
__device__ __forceinline__ Target block_target(const GemvParams& p) {
  const int part = kPair ? 0 : static_cast<int>(blockIdx.y / p.n_slots);
  const int64_t slot = blockIdx.y % p.n_slots;
  Target t{p.parts[part].w, p.parts[kPair ? 1 : part].w, p.x, p.parts[part].y};
  if (p.experts) {
    t.w = select_expert(t.w, p.experts[slot]);
    if (kPair) t.w_hi = select_expert(t.w_hi, p.experts[slot]);
    t.x += (slot / p.x_div) * t.w.cols;
    t.y += slot * t.w.rows;
  }
  return t;
}

// Rows of y per warp row group: kRows, or kRows / 2 of each weight for a gated pair.
__host__ __device__ constexpr int out_rows_per_group(bool pair) { return pair ? kRows / 2 : kRows; }

// The rows a warp's row group `grp` reads (j < kRows / 2 from Target::w, the rest from w_hi); past the end: row 0 of
// the group again, computed and dropped.
__device__ __forceinline__ void group_rows(int64_t grp, bool pair, int64_t rows, int (&r)[kRows]) {
  const int64_t r0 = grp * out_rows_per_group(pair);
#pragma unroll
  for (int j = 0; j < kRows; ++j) {
    const int64_t row = r0 + (pair ? j % (kRows / 2) : j);
    r[j] = static_cast<int>(row < rows ? row : r0);  // rows < 2^31 (the loaders)
  }
}

// The block's target (after the wait its expert ids need); false for a block without rows (a shorter part's spare
// blocks), which has waited for the kernel before it and may exit.
template <bool kPair>
__device__ __forceinline__ bool block_rows(const GemvParams& p, Target& tg) {
  if (p.experts) chain_wait();  // the slot's expert, hence the weights, come from an earlier kernel
  tg = block_target<kPair>(p);
  if (blockIdx.x * static_cast<int64_t>(kWarps / p.ksplit) * out_rows_per_group(kPair) < tg.w.rows) return true;
  chain_wait();
  return false;
}
// This warp's rows, and whether it has any.
template <bool kPair>
__device__ __forceinline__ bool warp_rows(const GemvParams& p, const Target& tg, int (&r)[kRows]) {
  const int64_t grp = blockIdx.x * static_cast<int64_t>(kWarps / p.ksplit) + (threadIdx.x >> 5) / p.ksplit;
  group_rows(grp, kPair, tg.w.rows, r);
  return grp * out_rows_per_group(kPair) < tg.w.rows;
}

// The router's tail: every block counts itself done once its logits are out; the last one (it sees the others'
// logits after the fence) routes each token by a warp (route_token, as route_topk does) and re-arms the counter for
// the next launch (a graph replays it).
__device__ void route_in_last_block(const GemvParams& p, const float* logits, int64_t E) {
  __shared__ bool last;
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) last = atomicAdd(p.route.done, 1u) == gridDim.x * gridDim.y - 1;
  __syncthreads();
  if (!last) return;
  __threadfence();
  const RouteTail& r = p.route;
  for (int t = threadIdx.x >> 5; t < p.n; t += blockDim.x >> 5)
    route_token(logits + t * E, E, r.k, r.renormalize, r.experts + t * r.k, r.weights + t * r.k);
  if (threadIdx.x == 0) *p.route.done = 0;
}

// The block's rows out: each warp's sums over its lanes, then the ks warps sharing a row group added (plus the
// bias) into y.
template <int NT, bool kPair, bool kRoute>
__device__ void write_rows(const float (&acc)[kRows][NT], const Target& tg, const GemvParams& p) {
  const DeviceWeight& w = tg.w;
  const int ks = p.ksplit, n = p.n;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, groups_per_block = kWarps / ks;
  __shared__ float red[kWarps][kRows][NT];
#pragma unroll
  for (int j = 0; j < kRows; ++j)
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      const float v = warp_sum(acc[j][t]);
      if (lane == 0) red[warp][j][t] = v;
    }
  __syncthreads();
  constexpr int per_group = out_rows_per_group(kPair);
  for (int i = threadIdx.x; i < groups_per_block * per_group * NT; i += blockDim.x) {
    const int g = i / (per_group * NT), j = (i / NT) % per_group, t = i % NT;
    const int64_t row = (blockIdx.x * static_cast<int64_t>(groups_per_block) + g) * per_group + j;
    if (row >= w.rows || t >= n) continue;
    float v = w.bias ? w.bias[row] : 0.0f;
    for (int k = 0; k < ks; ++k) v += red[g * ks + k][j][t];
    if constexpr (kPair) {  // the same floats as the up projection's row and gated_mul would give
      float up = tg.w_hi.bias ? tg.w_hi.bias[row] : 0.0f;
      for (int k = 0; k < ks; ++k) up += red[g * ks + k][j + per_group][t];
      v = gated_activation(p.act, v, up);
    }
    float& out = tg.y[t * w.rows + row];
    out = p.fusion.accumulate ? out + v : v;
  }
  if constexpr (kRoute)
    if (p.route.done) route_in_last_block(p, tg.y, w.rows);
}

// Block (row block, slot): kWarps / ksplit row groups of kRows rows, ksplit warps each.
template <class F, int NT, bool kPair = false, bool kNorm = false>
__global__ void __launch_bounds__(kWarps * 32, 2) gemv_kernel(GemvParams p) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, ks = p.ksplit;
  Target tg;
  if (!block_rows<kPair>(p, tg)) return;
  const F f(tg.w), f_hi(tg.w_hi);  // f_hi: the up projection's rows of a pair (unused without one)
  const float* x = tg.x;
  const int64_t cols = tg.w.cols;
  constexpr int kUnitCols = 32 * F::kValues;
  const int n_units = static_cast<int>((cols + kUnitCols - 1) / kUnitCols);  // cols < 2^31 (the loaders)
  int r[kRows];
  const bool active = warp_rows<kPair>(p, tg, r);
  typename F::Raw raw[F::kStages][kRows];
  // Stage st holds unit u + st ks of the round; it is refilled with its unit of the next round as soon as its dot
  // is done, so the other stages' loads stay in flight while it computes.
  auto load_stage = [&](int st, int unit) {
    const int c = unit * kUnitCols + lane * F::kValues;
    if (active && unit < n_units && c < cols)
#pragma unroll
      for (int j = 0; j < kRows; ++j) (kPair && j >= kRows / 2 ? f_hi : f).load(r[j], c, raw[st][j]);
  };
  int u = warp % ks;
#pragma unroll
  for (int st = 0; st < F::kStages; ++st)
    load_stage(st, u + st * ks);  // in flight while the kernel before finishes and the block fills its shared x
  chain_enter();
  SharedX sx{};
  if constexpr (F::kSharedX) {
    extern __shared__ int4 shared_x[];
    sx.nb = cols / 32;
    sx.xq = shared_x;
    float2* xs = reinterpret_cast<float2*>(shared_x + p.n * 4 * sx.nb);
    sx.xs = xs;
    const float* xin = x;
    if constexpr (kNorm) {  // one token
      float* xn = reinterpret_cast<float*>(reinterpret_cast<unsigned char*>(shared_x) + normed_x_offset(cols));
      norm_into_shared(x, cols, p.fusion.norm.w, p.fusion.norm.eps, xn);
      xin = xn;
    }
    fill_shared_x<F::kBits>(xin, cols, p.n, shared_x, xs);
    __syncthreads();
  }
  float acc[kRows][NT] = {};
  if (active) {
    while (u < n_units) {
#pragma unroll
      for (int st = 0; st < F::kStages; ++st) {
        const int unit = u + st * ks, c = unit * kUnitCols + lane * F::kValues;
        if (unit < n_units && c < cols) f.template dot<NT>(raw[st], x, sx, c, p.n, acc);
        load_stage(st, unit + ks * F::kStages);
      }
      u += ks * F::kStages;
    }
  }
  write_rows<NT, kPair, !F::kIntX>(acc, tg, p);  // routers take the float and dense paths (gemv_route)
}

// Dense rows whose 16-byte slices do not line up (cols not a multiple of the vector, odd pointers): a warp
// per row, a value per lane at a time. Only odd test shapes take it.
__global__ void gemv_scalar_kernel(GemvParams p) {
  chain_enter();
  const int64_t row = blockIdx.x * static_cast<int64_t>(blockDim.x / 32) + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  const Target tg = block_target(p);
  const DeviceWeight& w = tg.w;
  const float* x = tg.x;
  float* y = tg.y;
  if (row >= w.rows) return;
  for (int t = 0; t < p.n; ++t) {
    float acc = 0.0f;
    for (int64_t c = lane; c < w.cols; c += 32) acc += load_weight(w, row, c) * x[t * w.cols + c];
    acc = warp_sum(acc);
    const float v = acc + (w.bias ? w.bias[row] : 0.0f);
    if (lane == 0) y[t * w.rows + row] = p.fusion.accumulate ? y[t * w.rows + row] + v : v;
  }
}

// Warps per SM the column split aims for: enough loads in flight, but a block with shared x also fills it
// first, so fewer, longer blocks win there: 12 instead of 24 was 1.2-1.4x faster on the 8B 4-bit q, o, q/k/v and
// down projections and equal on the others (H200, lmlab_bench cuda_gemv, both in one run; docs/cuda.md).
// LMLAB_GEMV_WARPS_PER_SM overrides both (a tuning knob for lmlab_bench).
int warps_per_sm(bool shared_x) {
  static const int env = [] {
    const char* e = std::getenv("LMLAB_GEMV_WARPS_PER_SM");
    return e ? std::atoi(e) : 0;
  }();
  return env > 0 ? env : shared_x ? 12 : 24;
}

int64_t max_rows(const GemvParams& p) {
  int64_t rows = 0;
  for (int i = 0; i < p.n_parts; ++i) rows = std::max(rows, p.parts[i].w.rows);
  return rows;
}

// The column split (p.ksplit: warps of a block sharing rows) for about `warps_per_sm` warps per SM, and the grid.
dim3 size_grid(GemvParams& p, int64_t unit_cols, int warps_per_sm) {
  int64_t total_groups = 0;
  for (int i = 0; i < p.n_parts; ++i) total_groups += (p.parts[i].w.rows + kRows - 1) / kRows;
  const int64_t units = (p.parts[0].w.cols + unit_cols - 1) / unit_cols;
  const int64_t target = static_cast<int64_t>(multiprocessor_count()) * warps_per_sm;
  int ks = 1;
  while (ks < kWarps && total_groups * p.n_slots * ks < target && 2 * ks <= units) ks *= 2;
  p.ksplit = ks;
  const int64_t rows_per_block = kWarps / ks * out_rows_per_group(p.gated_pair);
  return dim3(static_cast<unsigned>((max_rows(p) + rows_per_block - 1) / rows_per_block),
              static_cast<unsigned>((p.gated_pair ? 1 : p.n_parts) * p.n_slots));
}

template <class F, int NT>
void launch(const GemvParams& base, cudaStream_t stream) {
  GemvParams p = base;
  const dim3 grid = size_grid(p, 32 * F::kValues, warps_per_sm(F::kSharedX));
  const bool norm = p.fusion.norm.w != nullptr;
  const size_t smem = F::kSharedX ? static_cast<size_t>(shared_bytes(p.parts[0].w.cols, p.n, norm)) : 0;
  if constexpr (NT == 1) {  // gated pairs and the input's norm: single-token decode only
    if constexpr (F::kSharedX)
      if (norm)
        return p.gated_pair ? launch_chained("gemv", gemv_kernel<F, 1, true, true>, grid, dim3(kWarps * 32), smem, stream, p)
                            : launch_chained("gemv", gemv_kernel<F, 1, false, true>, grid, dim3(kWarps * 32), smem, stream, p);
    if (p.gated_pair) return launch_chained("gemv", gemv_kernel<F, 1, true>, grid, dim3(kWarps * 32), smem, stream, p);
  }
  launch_chained("gemv", gemv_kernel<F, NT>, grid, dim3(kWarps * 32), smem, stream, p);
}

template <class F>
void launch_tokens(const GemvParams& p, cudaStream_t stream) {
  if (p.n <= 1) launch<F, 1>(p, stream);
  else if (p.n <= 2) launch<F, 2>(p, stream);
  else if (p.n <= 4) launch<F, 4>(p, stream);
  else launch<F, 8>(p, stream);
}

template <int BITS, ScaleRead SR>
void launch_int(const GemvParams& p, cudaStream_t stream) {
  if (shared_x_fits(p.parts[0].w.cols, p.n, p.fusion.norm.w != nullptr))
    return launch_tokens<Affine<BITS, XMode::shared, SR>>(p, stream);
  launch_tokens<Affine<BITS, XMode::lane, SR>>(p, stream);
}

// The integer paths: 4/8-bit matrices of at least kIntMinWeights (every part) with power-of-two groups.
bool takes_int_x(const GemvParams& p) {
  const DeviceWeight& w = p.parts[0].w;
  if (!w.affine || (w.quant.bits != 4 && w.quant.bits != 8)) return false;
  int64_t fewest = w.rows * w.cols;
  for (int i = 1; i < p.n_parts; ++i) fewest = std::min(fewest, p.parts[i].w.rows * p.parts[i].w.cols);
  const bool pow2_groups = (w.quant.group_size & (w.quant.group_size - 1)) == 0;  // every part's (same_format)
  return fewest >= kIntMinWeights && pow2_groups;
}

template <int BITS>
void launch_affine(const GemvParams& p, cudaStream_t stream) {
  if constexpr (BITS == 4 || BITS == 8) {
    if (takes_int_x(p)) {
      const AffineWeight& q = p.parts[0].w.quant;
      switch (q.scale_type) {
        case ScaleType::bf16: return launch_int<BITS, ScaleRead::bf16>(p, stream);
        case ScaleType::f16: return launch_int<BITS, ScaleRead::f16>(p, stream);
        case ScaleType::f32: return launch_int<BITS, ScaleRead::f32>(p, stream);
      }
    }
  }
  launch_tokens<Affine<BITS, XMode::f32, ScaleRead::runtime>>(p, stream);
}

// Dense weights whose 16-byte slices line up (else gemv_scalar_kernel, a value per lane).
bool dense_aligned(const GemvParams& p) {
  const DeviceWeight& w = p.parts[0].w;
  bool aligned = w.cols % (w.type == WeightType::f32 ? 4 : 8) == 0;
  for (int i = 0; i < p.n_parts; ++i)
    aligned = aligned && reinterpret_cast<uintptr_t>(p.parts[i].w.dense) % 16 == 0 &&
              (p.parts[i].w.stride_w % 16 == 0 || !p.experts);
  return aligned;
}

// The kernels that fill x into shared memory (XMode::shared, as launch_int picks them), the only ones that take the
// input's norm.
bool takes_shared_x(const GemvParams& p, bool norm) {
  return takes_int_x(p) && shared_x_fits(p.parts[0].w.cols, p.n, norm);
}

void run(const GemvParams& p, cudaStream_t stream) {
  const DeviceWeight& w = p.parts[0].w;
  if (p.fusion.norm.w && (p.n != 1 || !takes_shared_x(p, true)))
    throw Error(ErrorKind::internal, "cuda gemv", "the input's norm asked of a kernel that cannot take it");
  if (w.affine) {
    switch (w.quant.bits) {
      case 2: launch_affine<2>(p, stream); break;
      case 3: launch_affine<3>(p, stream); break;
      case 4: launch_affine<4>(p, stream); break;
      case 5: launch_affine<5>(p, stream); break;
      case 6: launch_affine<6>(p, stream); break;
      case 8: launch_affine<8>(p, stream); break;
      default:
        throw Error(ErrorKind::unsupported, "cuda gemv", "affine weights of " + std::to_string(w.quant.bits) + " bits");
    }
  } else {
    if (!dense_aligned(p)) {
      const dim3 grid(static_cast<unsigned>((max_rows(p) + 7) / 8), static_cast<unsigned>(p.n_parts * p.n_slots));
      launch_chained("gemv", gemv_scalar_kernel, grid, dim3(256), 0, stream, p);
    } else if (w.type == WeightType::bf16) {
      launch_tokens<Dense<WeightType::bf16>>(p, stream);
    } else if (w.type == WeightType::f16) {
      launch_tokens<Dense<WeightType::f16>>(p, stream);
    } else {
      launch_tokens<Dense<WeightType::f32>>(p, stream);
    }
  }
}

// Parts of one launch share a kernel, and the affine kernels fix the scale type and group size at launch.
bool same_format(const DeviceWeight& a, const DeviceWeight& b) {
  if (a.affine != b.affine || a.cols != b.cols) return false;
  return a.affine ? a.quant.bits == b.quant.bits && a.quant.scale_type == b.quant.scale_type &&
                        a.quant.group_size == b.quant.group_size
                  : a.type == b.type;
}

// One launch for parts of the same format (their kernels are the same template), else one per part.
void run_parts(const GemvPart* parts, int n_parts, const int32_t* experts, const float* x, int64_t x_div, int64_t n_slots,
               int64_t n, const GemvFusion& fusion, cudaStream_t stream) {
  int i = 0;
  while (i < n_parts) {
    GemvParams p{};
    p.experts = experts, p.x = x, p.x_div = x_div, p.n_slots = n_slots, p.n = static_cast<int>(n), p.ksplit = 1;
    p.fusion = fusion;
    p.parts[p.n_parts++] = parts[i++];
    while (i < n_parts && p.n_parts < kMaxGemvParts && same_format(parts[i].w, p.parts[0].w))
      p.parts[p.n_parts++] = parts[i++];
    run(p, stream);
  }
}

}  // namespace

bool gemv_norms_input(const DeviceWeight& w, int64_t n) {
  GemvParams p{};
  p.parts[0].w = w, p.n_parts = 1, p.n = static_cast<int>(n);
  return n == 1 && w.cols % 4 == 0 && takes_shared_x(p, true);  // kernels with the norm: one token (decode)
}

void gemv(const GemvPart* parts, int n_parts, const float* x, int64_t n, cudaStream_t stream, const GemvFusion& fusion) {
  if (n == 0 || n_parts == 0) return;
  run_parts(parts, n_parts, nullptr, x, 1, 1, n, fusion, stream);
}

void gemv_gathered(const GemvPart* parts, int n_parts, const int32_t* experts, const float* x, int64_t x_div,
                   int64_t n_slots, cudaStream_t stream) {
  if (n_slots == 0 || n_parts == 0) return;
  run_parts(parts, n_parts, experts, x, x_div, n_slots, 1, {}, stream);
}

void gemv_route(const GemvPart& router, const float* x, int64_t n, const RouteTail& route, cudaStream_t stream) {
  if (n == 0) return;
  GemvParams p{};
  p.x = x, p.x_div = 1, p.n_slots = 1, p.n = static_cast<int>(n), p.ksplit = 1;
  p.parts[0] = router, p.n_parts = 1;  // one part: every block has rows, so every block counts itself
  // Not chosen, or kernels without the tail (the integer paths, the scalar kernel): two launches.
  if (!decode_options().fused_routing || takes_int_x(p) || (!router.w.affine && !dense_aligned(p))) {
    run(p, stream);
    route_topk(router.y, n, router.w.rows, route.k, route.renormalize, route.experts, route.weights, stream);
    return;
  }
  p.route = route;
  run(p, stream);
}

void gemv_gate_up(const GemvPart& gate, const GemvPart& up, GateActivation act, float* out, const int32_t* experts,
                  const float* x, int64_t x_div, int64_t n_slots, int64_t n, cudaStream_t stream,
                  const InputNorm& norm) {
  if (n == 0 || n_slots == 0) return;
  GemvParams p{};
  p.experts = experts, p.x = x, p.x_div = x_div, p.n_slots = n_slots, p.n = static_cast<int>(n), p.ksplit = 1;
  p.fusion.norm = norm;
  p.parts[0] = {gate.w, out}, p.parts[1] = {up.w, nullptr}, p.n_parts = 2;
  p.gated_pair = true, p.act = act;
  if (decode_options().gate_up_pair && n == 1 && same_format(gate.w, up.w) && gate.w.rows == up.w.rows &&
      (gate.w.affine || dense_aligned(p)))
    return run(p, stream);
  // Otherwise (not chosen, several tokens, formats that cannot share a launch, dense rows that do not line up): the
  // two products, then the activation.
  const GemvPart parts[] = {gate, up};
  run_parts(parts, 2, experts, x, x_div, n_slots, n, p.fusion, stream);
  gated_mul(act, gate.y, up.y, out, n * n_slots * gate.w.rows, stream);
}

}  // namespace lmlab::kernels::cuda
