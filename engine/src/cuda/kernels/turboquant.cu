// TurboQuant (and affine) KV records on the GPU, in the blocks and record layout of kv/turboquant/tq_codec.h, so
// kv/ keeps the block tables, prompt cache, window release and byte accounting (docs/cuda.md).
//   - tq_kv_write: a warp per group vector (token, KV head, K or V, group of g <= 128 dims). It rotates the group
//     (D2 H D1 / sqrt(g), arXiv 2504.19874 Algorithm 1's Pi), then encodes it like TqCodec::encode with the same
//     float / double operations in the same order (no FMA contraction: __fadd_rn, __dmul_rn, ...):
//       lloyd_max: ||x|| summed in double in index order; u = x / ||x||; without QJL the angle search over the 17
//         scales lambda (tq_codec.cpp: codes nearest to lambda u, the sums <u, c> and ||c||^2 updated in double
//         by the coordinates whose code moved, in index order, exactly as the CPU sweep does) and the scalar
//         ||x|| / <u, c>; with QJL the nearest codes, ||r|| and the signs of S r (Algorithm 2).
//       affine: min, (max - min) / levels rounded to f16, codes rint((x - min) / scale).
//     The scale-by-scale codes are computed by all lanes at once; the double sums run in every lane in the CPU's
//     order over shared memory (a few hundred dependent adds per vector), which is what makes the records equal.
//   - tq_attention: flash-decoding as attention.cu: block = (KV head, split, query), 4 warps. The block rotates
//     its query heads once in shared memory (the same butterflies as the CPU, so q~ is the CPU's) and, for QJL
//     keys, projects them by S. It copies the records of up to 32 positions of its KV head (K and V) into shared
//     memory with wide loads, then each warp scores one position at a time for the G query heads of the KV head
//     (GQA: a record is read and decoded once for the group): lane d decodes coordinate d straight from the
//     packed codes (planes / nibbles / bytes) through the codebook in shared memory, score = sum_d q~_d a c[idx_d]
//     (+ sum_d (S q~)_d kappa sign_d), online softmax in registers, V accumulated in the rotated domain. Split
//     states merge in a second kernel, which also rotates the output back (Pi^T, once per head); without splits
//     the block does it itself.
#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>

#include "cuda/cuda_check.h"
#include "cuda/kernels/kernels_cuda.h"
#include "cuda/kernels/reduce.cuh"
#include "kv/turboquant/tq_codec.h"
#include "lmlab/error.h"

namespace lmlab::kernels::cuda {

namespace {

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

__device__ __forceinline__ float h2f(uint16_t v) { return __half2float(__ushort_as_half(v)); }
// f16 at a 2-byte aligned address.
__device__ __forceinline__ float load_half(const uint8_t* p) { return h2f(*reinterpret_cast<const uint16_t*>(p)); }

// Index of the nearest centroid: Codebook::quantize's binary search over the boundaries (t: nb ascending floats).
__device__ __forceinline__ int quantize(const float* t, int nb, float x) {
  int lo = 0, hi = nb;
  while (lo < hi) {
    const int mid = (lo + hi) / 2;
    if (x > t[mid]) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

// Entry i of a group's packed codes (kv/turboquant/pack.h): planes for 2, 3, 5 bits (plane_bytes = g / 8 each),
// nibbles for 4 (16 entries per little-endian uint64, entry j at bit 32 (j % 2) + 4 (j / 2)), bytes for 8.
__device__ __forceinline__ int code_at(const uint8_t* r, int i, int bits, int plane_bytes) {
  if (bits == 4) {
    const int j = i & 15, pos = ((j & 1) << 5) + ((j >> 1) << 2);
    return (r[((i >> 4) << 3) + (pos >> 3)] >> (pos & 7)) & 15;
  }
  if (bits == 8) return r[i];
  const int byte = i >> 3, sh = i & 7;
  int v = 0;
  for (int p = 0; p < bits; ++p) v |= ((r[p * plane_bytes + byte] >> sh) & 1) << p;
  return v;
}

// Byte ob of the packed codes of idx [g] (the inverse of code_at).
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

// In-place unnormalised Walsh-Hadamard transform of n_vec vectors of g floats (x [n_vec g], shared memory),
// wht.cpp's butterflies stage by stage; every thread of the block calls it.
__device__ void block_fwht(float* x, int n_vec, int g) {
  const int half = g / 2;
  for (int h = 1; h < g; h *= 2) {
    for (int b = threadIdx.x; b < n_vec * half; b += blockDim.x) {
      const int vec = b / half, k = b % half;
      const int j = vec * g + (k / h) * 2 * h + (k % h);
      const float p = x[j], q = x[j + h];
      x[j] = __fadd_rn(p, q);
      x[j + h] = __fsub_rn(p, q);
    }
    __syncthreads();
  }
}

// x [n_vec][D] (shared) <- Pi x (forward) or Pi^T x (inverse), per group of g dims; RandomizedHadamard's order.
__device__ void block_rotate(float* x, int n_vec, int D, int g, const float* s_in, const float* s_out, float inv_sqrt) {
  for (int e = threadIdx.x; e < n_vec * D; e += blockDim.x) x[e] = __fmul_rn(x[e], s_in[e % D]);
  __syncthreads();
  block_fwht(x, n_vec * (D / g), g);
  for (int e = threadIdx.x; e < n_vec * D; e += blockDim.x) x[e] = __fmul_rn(x[e], __fmul_rn(s_out[e % D], inv_sqrt));
  __syncthreads();
}

// ---------------------------------------------------------------------------------------------------------------
// Encode

constexpr int kEncWarps = 4;
constexpr int kMaxG = 128;
constexpr int kScales = turboquant::kAngleScales;

struct EncodeParams {
  TqKvBlocks kv;
  const float* k;
  const float* v;
  const int32_t* positions;
  int64_t n;
  double lambda0;           // 1 - span: scale 0 multiplies in double (tq_codec.cpp)
  float lambda[kScales];    // angle_scale(s), s > 0
};

struct EncodeWarp {
  float x[kMaxG];                 // the rotated group, later the QJL residual
  float u[kMaxG];                 // x / ||x||
  uint8_t codes[kScales][kMaxG];  // codes per scale (angle search); codes[0] also holds the QJL / affine codes
  uint8_t sign[kMaxG];            // QJL: S r >= 0
  uint32_t moved[kScales][kMaxG / 32];  // coordinates whose code changed from scale s - 1 to s
  float cent[32], bound[32];
};

__global__ void __launch_bounds__(kEncWarps * 32) tq_encode_kernel(EncodeParams a) {
  __shared__ EncodeWarp smem[kEncWarps];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const TqKvBlocks& kv = a.kv;
  const int64_t nkv = kv.n_kv_heads, D = kv.head_dim, ng = kv.k.n_groups;
  const int64_t job = static_cast<int64_t>(blockIdx.x) * kEncWarps + warp;  // ((t nkv + h) 2 + is_v) ng + gi
  if (job >= a.n * nkv * 2 * ng) return;  // whole warps only: no block-wide barrier below
  const int gi = static_cast<int>(job % ng);
  const bool is_v = (job / ng) % 2 == 1;
  const int64_t h = (job / (2 * ng)) % nkv, t = job / (2 * ng * nkv);
  const TqDeviceCodec c = is_v ? kv.v : kv.k;
  const int g = c.group_dim;
  EncodeWarp& s = smem[warp];

  // Rotate: y = x * d1, butterflies, * (d2 / sqrt(g)).
  const float* src = (is_v ? a.v : a.k) + (t * nkv + h) * D + gi * g;
  for (int i = lane; i < g; i += 32) s.x[i] = kv.rot_d1 ? __fmul_rn(src[i], kv.rot_d1[gi * g + i]) : src[i];
  if (c.scheme == kTqLloydMax)
    for (int i = lane; i < (1 << c.bits); i += 32) {
      s.cent[i] = c.centroids[i];
      if (i + 1 < (1 << c.bits)) s.bound[i] = c.boundaries[i];
    }
  __syncwarp();
  if (kv.rot_d1) {
    for (int hh = 1; hh < g; hh *= 2) {
      for (int b = lane; b < g / 2; b += 32) {
        const int j = (b / hh) * 2 * hh + (b % hh);
        const float p = s.x[j], q = s.x[j + hh];
        s.x[j] = __fadd_rn(p, q);
        s.x[j + hh] = __fsub_rn(p, q);
      }
      __syncwarp();
    }
    for (int i = lane; i < g; i += 32) s.x[i] = __fmul_rn(s.x[i], __fmul_rn(kv.rot_d2[gi * g + i], kv.rot_inv_sqrt));
    __syncwarp();
  }

  const int64_t B = kv.block_tokens, p = a.positions[t];
  uint8_t* rec = kv.blocks[p / B] +
                 (is_v ? nkv * B * kv.k.record_bytes + (h * B + p % B) * kv.v.record_bytes
                       : (h * B + p % B) * kv.k.record_bytes) +
                 static_cast<int64_t>(gi) * c.group_bytes;
  const uint8_t* idx = s.codes[0];
  uint16_t scalar0 = 0, scalar1 = 0;

  if (c.scheme == kTqAffine) {
    float lo = INFINITY, hi = -INFINITY;
    for (int i = lane; i < g; i += 32) lo = fminf(lo, s.x[i]), hi = fmaxf(hi, s.x[i]);
    for (int o = 16; o > 0; o >>= 1) {
      lo = fminf(lo, __shfl_xor_sync(0xffffffffu, lo, o));
      hi = fmaxf(hi, __shfl_xor_sync(0xffffffffu, hi, o));
    }
    const int levels = (1 << c.bits) - 1;
    const float min_h = h2f(f32_to_f16_cpu(lo));
    const float scale_h = h2f(f32_to_f16_cpu(__fdiv_rn(__fsub_rn(hi, min_h), static_cast<float>(levels))));
    for (int i = lane; i < g; i += 32) {
      const float q = scale_h > 0.0f ? rintf(__fdiv_rn(__fsub_rn(s.x[i], min_h), scale_h)) : 0.0f;
      s.codes[0][i] = static_cast<uint8_t>(fminf(fmaxf(q, 0.0f), static_cast<float>(levels)));
    }
    scalar0 = f32_to_f16_cpu(scale_h);
    scalar1 = f32_to_f16_cpu(min_h);
  } else {
    // ||x|| in double, index order (every lane runs the same sum over shared memory).
    double ss = 0.0;
    for (int i = 0; i < g; ++i) {
      const double xi = s.x[i];
      ss = __dadd_rn(ss, __dmul_rn(xi, xi));
    }
    const double norm = __dsqrt_rn(ss);
    const double inv = norm > 0.0 ? __ddiv_rn(1.0, norm) : 0.0;
    for (int i = lane; i < g; i += 32) s.u[i] = __double2float_rn(__dmul_rn(static_cast<double>(s.x[i]), inv));
    __syncwarp();
    const int nb = (1 << c.bits) - 1;
    if (c.qjl) {
      // Algorithm 2: nearest codes, residual r = u - c[idx] (into x), ||r||, signs of S r.
      for (int i = lane; i < g; i += 32) {
        const int k = quantize(s.bound, nb, s.u[i]);
        s.codes[0][i] = static_cast<uint8_t>(k);
        s.x[i] = __fsub_rn(s.u[i], s.cent[k]);
      }
      __syncwarp();
      double rr = 0.0;
      for (int i = 0; i < g; ++i) {
        const double ri = s.x[i];
        rr = __dadd_rn(rr, __dmul_rn(ri, ri));
      }
      for (int row = lane; row < g; row += 32) {
        const float* srow = c.qjl_matrix + static_cast<int64_t>(row) * g;
        float acc = 0.0f;
        for (int j = 0; j < g; ++j) acc = fmaf(srow[j], s.x[j], acc);
        s.sign[row] = acc >= 0.0f ? 1 : 0;
      }
      scalar0 = f32_to_f16_cpu(__double2float_rn(norm));
      scalar1 = f32_to_f16_cpu(__double2float_rn(__dsqrt_rn(rr)));
    } else {
      // The angle search: codes of every scale at once, then the CPU's sequential sweep of the sums.
      for (int i = lane; i < g; i += 32) {
        const float u = s.u[i];
        s.codes[0][i] = static_cast<uint8_t>(
            quantize(s.bound, nb, __double2float_rn(__dmul_rn(static_cast<double>(u), a.lambda0))));
        for (int sc = 1; sc < kScales; ++sc)
          s.codes[sc][i] = static_cast<uint8_t>(quantize(s.bound, nb, __fmul_rn(u, a.lambda[sc])));
      }
      __syncwarp();
      const int chunks = (g + 31) / 32;
      for (int sc = 1; sc < kScales; ++sc)
        for (int ch = 0; ch < chunks; ++ch) {
          const int i = ch * 32 + lane;
          const unsigned m = __ballot_sync(0xffffffffu, i < g && s.codes[sc][i] != s.codes[sc - 1][i]);
          if (lane == 0) s.moved[sc][ch] = m;
        }
      __syncwarp();
      const float* cc = s.cent;
      double dot = 0.0, c2 = 0.0;
      for (int i = 0; i < g; ++i) {
        const double ci = cc[s.codes[0][i]];
        dot = __dadd_rn(dot, __dmul_rn(static_cast<double>(s.u[i]), ci));
        c2 = __dadd_rn(c2, __dmul_rn(ci, ci));
      }
      double best = -2.0, best_dot = 0.0, plain_cos = -2.0, plain_dot = 0.0;
      int best_s = kScales / 2;
      for (int sc = 0; sc < kScales; ++sc) {
        if (sc > 0)
          for (int ch = 0; ch < chunks; ++ch)
            for (unsigned m = s.moved[sc][ch]; m != 0; m &= m - 1) {
              const int i = ch * 32 + __ffs(m) - 1;
              const float cn = cc[s.codes[sc][i]], co = cc[s.codes[sc - 1][i]];
              dot = __dadd_rn(dot, __dmul_rn(static_cast<double>(s.u[i]), static_cast<double>(__fsub_rn(cn, co))));
              c2 = __dadd_rn(c2, __dsub_rn(__dmul_rn(static_cast<double>(cn), static_cast<double>(cn)),
                                           __dmul_rn(static_cast<double>(co), static_cast<double>(co))));
            }
        const double cs = c2 > 0.0 ? __ddiv_rn(dot, __dsqrt_rn(c2)) : -1.0;
        if (sc == kScales / 2) {
          plain_cos = cs;
          plain_dot = dot;
        } else if (cs > best) {
          best = cs;
          best_dot = dot;
          best_s = sc;
        }
      }
      double dot_uc = best_dot;
      if (plain_cos >= best) {
        best_s = kScales / 2;
        dot_uc = plain_dot;
      }
      idx = s.codes[best_s];
      scalar0 = f32_to_f16_cpu(__double2float_rn(dot_uc > 0.0 ? __ddiv_rn(norm, dot_uc) : norm));
    }
  }
  __syncwarp();

  // [codes][signs][f16 scalars]
  for (int ob = lane; ob < c.code_bytes; ob += 32) rec[ob] = packed_byte(idx, ob, c.bits, g);
  if (c.qjl)
    for (int ob = lane; ob < g / 8; ob += 32) {
      int v = 0;
      for (int e = 0; e < 8; ++e) v |= s.sign[8 * ob + e] << e;
      rec[c.code_bytes + ob] = static_cast<uint8_t>(v);
    }
  if (lane == 0) {
    uint16_t* sc = reinterpret_cast<uint16_t*>(rec + c.scalar_offset);
    sc[0] = scalar0;
    if (c.scheme == kTqAffine || c.qjl) sc[1] = scalar1;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Attention

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kMaxGroup = 8;
constexpr int kTile = 32;  // positions staged in shared memory at a time
constexpr int kTargetBlocks = 132 * 2;
constexpr size_t kMaxSmem = 48 * 1024;

struct TqAttnParams {
  TqKvBlocks kv;
  const float* q;
  float* out;
  float* part_o;   // [n_q, n_heads, splits, head_dim] unnormalised rotated outputs
  float* part_ml;  // [n_q, n_heads, splits, 2] running max and sum
  const int32_t* positions;
  int64_t n_heads, window;
  int group;
  float scale, softcap;
  int tile_v_offset;  // bytes from the work area to the staged V records (16-byte aligned)
  int work_bytes;     // the work area: staged records, the query's rotation, the warps' merge
};

// Shared memory: [work area][S q~: G x D floats, QJL only][K centroids 32][V centroids 32].
struct SmemLayout {
  int work_bytes, sq_offset, cent_offset, total;
};
SmemLayout smem_layout(const TqKvBlocks& kv, int G) {
  const int D = static_cast<int>(kv.head_dim);
  const int tile_k = (kTile * kv.k.record_bytes + 15) / 16 * 16, tile_v = (kTile * kv.v.record_bytes + 15) / 16 * 16;
  const int merge = kWarps * G * (D + 2) * 4, rot = G * D * 4;
  SmemLayout l;
  l.work_bytes = std::max({tile_k + tile_v, merge, rot});
  l.sq_offset = l.work_bytes;
  l.cent_offset = l.sq_offset + (kv.k.qjl ? G * D * 4 : 0);
  l.total = l.cent_offset + 64 * 4;
  return l;
}

// Copies `bytes` (even) from global src (2-byte aligned) to shared dst (16-byte aligned), as wide as alignment allows.
__device__ __forceinline__ void stage(uint8_t* dst, const uint8_t* src, int bytes) {
  const uintptr_t al = reinterpret_cast<uintptr_t>(src) | static_cast<uintptr_t>(bytes);
  if ((al & 15) == 0) {
    for (int i = threadIdx.x; i < bytes / 16; i += kThreads)
      reinterpret_cast<uint4*>(dst)[i] = reinterpret_cast<const uint4*>(src)[i];
  } else if ((al & 3) == 0) {
    for (int i = threadIdx.x; i < bytes / 4; i += kThreads)
      reinterpret_cast<uint32_t*>(dst)[i] = reinterpret_cast<const uint32_t*>(src)[i];
  } else {
    for (int i = threadIdx.x; i < bytes / 2; i += kThreads)
      reinterpret_cast<uint16_t*>(dst)[i] = reinterpret_cast<const uint16_t*>(src)[i];
  }
}

// Coordinates d = lane + 32 i of one record (tq_codec.h's score row): lloyd_max a c[idx], affine min + a idx;
// QJL: kappa sign (the row's second half), kappa = a gamma sqrt(pi/2) / g.
template <int DPL, bool QJL>
__device__ __forceinline__ void decode_record(const TqDeviceCodec& c, const uint8_t* rec, const float* cent, int lane,
                                              int D, int log_g, float (&val)[DPL], float (&sgn)[DPL]) {
  const int g = c.group_dim, plane_bytes = g / 8;
#pragma unroll
  for (int i = 0; i < DPL; ++i) {
    const int d = lane + 32 * i;
    val[i] = 0.0f;
    if (QJL) sgn[i] = 0.0f;
    if (d >= D) continue;
    const int gi = d >> log_g, e = d & (g - 1);
    const uint8_t* r = rec + gi * c.group_bytes;
    const float a = load_half(r + c.scalar_offset);
    const int code = code_at(r, e, c.bits, plane_bytes);
    if (c.scheme == kTqAffine) {
      val[i] = load_half(r + c.scalar_offset + 2) + a * static_cast<float>(code);
    } else {
      val[i] = a * cent[code];
      if (QJL) {
        const float kappa = a * load_half(r + c.scalar_offset + 2) *
                            static_cast<float>(turboquant::kSqrtHalfPi / static_cast<double>(g));
        sgn[i] = ((r[c.code_bytes + (e >> 3)] >> (e & 7)) & 1) ? kappa : -kappa;
      }
    }
  }
}

template <int DPL, bool QJL>
__global__ void __launch_bounds__(kThreads) tq_attention_kernel(TqAttnParams a) {
  extern __shared__ __align__(16) uint8_t smem[];
  const TqKvBlocks& kv = a.kv;
  const int64_t kh = blockIdx.x, split = blockIdx.y, t = blockIdx.z;
  const int splits = gridDim.y, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int D = static_cast<int>(kv.head_dim), G = a.group, g = kv.k.group_dim;
  const int log_g = __ffs(g) - 1;
  const int64_t B = kv.block_tokens, nkv = kv.n_kv_heads;
  const int k_rec = kv.k.record_bytes, v_rec = kv.v.record_bytes;
  float* work = reinterpret_cast<float*>(smem);
  float* sq = reinterpret_cast<float*>(smem + a.work_bytes);
  float* cent_k = sq + (QJL ? G * D : 0);
  float* cent_v = cent_k + 32;

  const int64_t pos = a.positions[t];
  const int64_t lo = a.window > 0 ? max(int64_t{0}, pos - a.window + 1) : 0;
  const int64_t len = max(int64_t{0}, pos - lo + 1), per = (len + splits - 1) / splits;
  const int64_t j0 = lo + split * per, j1 = min(lo + len, j0 + per);

  if (kv.k.scheme == kTqLloydMax && threadIdx.x < (1 << kv.k.bits)) cent_k[threadIdx.x] = kv.k.centroids[threadIdx.x];
  if (kv.v.scheme == kTqLloydMax && threadIdx.x < (1 << kv.v.bits)) cent_v[threadIdx.x] = kv.v.centroids[threadIdx.x];
  // The group's query heads, rotated into the working domain (q~ = Pi q), and S q~ for QJL keys.
  float* qs = work;  // [G][D]
  for (int e = threadIdx.x; e < G * D; e += kThreads) qs[e] = a.q[(t * a.n_heads + kh * G) * D + e];
  __syncthreads();
  if (kv.rot_d1) block_rotate(qs, G, D, g, kv.rot_d1, kv.rot_d2, kv.rot_inv_sqrt);
  if (QJL) {
    for (int e = threadIdx.x; e < G * D; e += kThreads) {
      const int d = e % D, base = e - d + (d & ~(g - 1)), row = d & (g - 1);
      const float* srow = kv.k.qjl_matrix + static_cast<int64_t>(row) * g;
      float acc = 0.0f;
      for (int j = 0; j < g; ++j) acc = fmaf(srow[j], qs[base + j], acc);
      sq[e] = acc;
    }
  }
  float q[kMaxGroup][DPL], acc[kMaxGroup][DPL], m[kMaxGroup], l[kMaxGroup];
#pragma unroll
  for (int hg = 0; hg < kMaxGroup; ++hg) {
    m[hg] = -INFINITY, l[hg] = 0.0f;
#pragma unroll
    for (int i = 0; i < DPL; ++i) {
      const int d = lane + 32 * i;
      q[hg][i] = hg < G && d < D ? qs[hg * D + d] : 0.0f;
      acc[hg][i] = 0.0f;
    }
  }
  __syncthreads();  // qs is overwritten by the staged records

  uint8_t* tile_k = smem;
  uint8_t* tile_v = smem + a.tile_v_offset;
  for (int64_t p0 = j0; p0 < j1;) {
    const int64_t b = p0 / B, slot = p0 % B;
    const int n = static_cast<int>(min(j1, min((b + 1) * B, p0 + kTile)) - p0);
    const uint8_t* blk = kv.blocks[b];
    stage(tile_k, blk + (kh * B + slot) * k_rec, n * k_rec);
    stage(tile_v, blk + nkv * B * k_rec + (kh * B + slot) * v_rec, n * v_rec);
    __syncthreads();
    for (int jj = warp; jj < n; jj += kWarps) {
      float kf[DPL], ks[DPL], vf[DPL], unused[DPL];
      decode_record<DPL, QJL>(kv.k, tile_k + jj * k_rec, cent_k, lane, D, log_g, kf, ks);
      decode_record<DPL, false>(kv.v, tile_v + jj * v_rec, cent_v, lane, D, log_g, vf, unused);
#pragma unroll
      for (int hg = 0; hg < kMaxGroup; ++hg) {
        if (hg >= G) break;
        float s = 0.0f;
#pragma unroll
        for (int i = 0; i < DPL; ++i) {
          s = fmaf(q[hg][i], kf[i], s);
          if (QJL && lane + 32 * i < D) s = fmaf(sq[hg * D + lane + 32 * i], ks[i], s);
        }
        s = warp_sum(s) * a.scale;
        if (a.softcap > 0.0f) s = a.softcap * tanhf(s / a.softcap);
        const float m_new = fmaxf(m[hg], s);
        const float corr = expf(m[hg] - m_new), pr = expf(s - m_new);
        l[hg] = l[hg] * corr + pr;
#pragma unroll
        for (int i = 0; i < DPL; ++i) acc[hg][i] = acc[hg][i] * corr + pr * vf[i];
        m[hg] = m_new;
      }
    }
    __syncthreads();  // the tile is restaged
    p0 += n;
  }

  // Merge the warps' states (work area: [kWarps][G][D] outputs, then [kWarps][G][2] (m, l)).
  float* so = work;
  float* sml = work + kWarps * G * D;
#pragma unroll
  for (int hg = 0; hg < kMaxGroup; ++hg) {
    if (hg >= G) break;
#pragma unroll
    for (int i = 0; i < DPL; ++i) {
      const int d = lane + 32 * i;
      if (d < D) so[(warp * G + hg) * D + d] = acc[hg][i];
    }
    if (lane == 0) sml[(warp * G + hg) * 2] = m[hg], sml[(warp * G + hg) * 2 + 1] = l[hg];
  }
  __syncthreads();
  constexpr int kPerThread = kMaxGroup * 32 * DPL / kThreads;  // G D / kThreads, rounded up for G = 8
  float res[kPerThread > 0 ? kPerThread : 1];
#pragma unroll
  for (int r = 0; r < (kPerThread > 0 ? kPerThread : 1); ++r) {
    const int e = threadIdx.x + r * kThreads;
    res[r] = 0.0f;
    if (e >= G * D) continue;
    const int hg = e / D, d = e % D;
    float M = -INFINITY;
    for (int w = 0; w < kWarps; ++w) M = fmaxf(M, sml[(w * G + hg) * 2]);
    float L = 0.0f, O = 0.0f;
    if (M != -INFINITY)
      for (int w = 0; w < kWarps; ++w) {
        const float f = expf(sml[(w * G + hg) * 2] - M);
        L += sml[(w * G + hg) * 2 + 1] * f;
        O += so[(w * G + hg) * D + d] * f;
      }
    const int64_t hq = kh * G + hg;
    if (splits == 1) {
      res[r] = L > 0.0f ? O / L : 0.0f;
    } else {
      const int64_t slot = (t * a.n_heads + hq) * splits + split;
      a.part_o[slot * D + d] = O;
      if (d == 0) a.part_ml[slot * 2] = M, a.part_ml[slot * 2 + 1] = L;
    }
  }
  if (splits > 1) return;  // uniform over the block
  __syncthreads();  // so / sml are read by every thread before the outputs take their place
  float* ob = work;  // [G][D] normalised outputs in the rotated domain
#pragma unroll
  for (int r = 0; r < (kPerThread > 0 ? kPerThread : 1); ++r) {
    const int e = threadIdx.x + r * kThreads;
    if (e < G * D) ob[e] = res[r];
  }
  __syncthreads();
  if (kv.rot_d1) block_rotate(ob, G, D, g, kv.rot_d2, kv.rot_d1, kv.rot_inv_sqrt);  // Pi^T = D1 H D2 / sqrt(g)
  for (int e = threadIdx.x; e < G * D; e += kThreads) a.out[(t * a.n_heads + kh * G) * D + e] = ob[e];
}

// Block per (query, head): merges the splits' states and rotates the output back.
__global__ void __launch_bounds__(kThreads) tq_merge_kernel(const float* part_o, const float* part_ml, float* out,
                                                           int D, int splits, int g, const float* d1, const float* d2,
                                                           float inv_sqrt) {
  __shared__ float ob[256];
  const int64_t qh = blockIdx.x;
  const float* ml = part_ml + qh * splits * 2;
  float M = -INFINITY;
  for (int s = 0; s < splits; ++s) M = fmaxf(M, ml[2 * s]);
  for (int d = threadIdx.x; d < D; d += kThreads) {
    float L = 0.0f, O = 0.0f;
    if (M != -INFINITY)
      for (int s = 0; s < splits; ++s) {
        const float f = expf(ml[2 * s] - M);
        L += ml[2 * s + 1] * f;
        O += part_o[(qh * splits + s) * D + d] * f;
      }
    ob[d] = L > 0.0f ? O / L : 0.0f;
  }
  __syncthreads();
  if (d1) block_rotate(ob, 1, D, g, d2, d1, inv_sqrt);
  for (int d = threadIdx.x; d < D; d += kThreads) out[qh * D + d] = ob[d];
}

int split_count(int64_t n_q, int64_t n_kv_heads, int64_t n_kv, int max_splits) {
  const int64_t blocks = n_q * n_kv_heads;
  const int64_t want = (kTargetBlocks + blocks - 1) / blocks;
  // At least 32 positions (one staged tile) per split.
  const int64_t useful = std::max<int64_t>(1, n_kv / kTile);
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>({want, useful, max_splits})));
}

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
  const int64_t jobs = n * kv.n_kv_heads * 2 * kv.k.n_groups;
  tq_encode_kernel<<<static_cast<unsigned>((jobs + kEncWarps - 1) / kEncWarps), kEncWarps * 32, 0, stream>>>(a);
  lmlab::cuda::check_launch("TurboQuant KV write");
}

void tq_attention(const TqKvBlocks& kv, const float* q, float* out, int64_t n_q, int64_t n_heads,
                  const int32_t* positions, int64_t n_kv_bound, float scale, float softcap, int64_t window,
                  int max_splits, void* scratch, cudaStream_t stream) {
  if (n_q == 0) return;
  const int64_t D = kv.head_dim, G = n_heads / kv.n_kv_heads;
  if (G > kMaxGroup || D > 256 || G * kv.n_kv_heads != n_heads)
    throw Error(ErrorKind::unsupported, "cuda attention",
                "needs n_heads a multiple of n_kv_heads with at most 8 query heads per KV head and head_dim <= 256");
  check_codec(kv.k, kv, "K");
  check_codec(kv.v, kv, "V");
  const SmemLayout lay = smem_layout(kv, static_cast<int>(G));
  if (static_cast<size_t>(lay.total) > kMaxSmem)
    throw Error(ErrorKind::unsupported, "cuda TurboQuant attention", "records too large for shared memory");
  const int splits = split_count(n_q, kv.n_kv_heads, window > 0 ? std::min(window, n_kv_bound) : n_kv_bound,
                                 max_splits);
  TqAttnParams a{};
  a.kv = kv;
  a.q = q;
  a.out = out;
  a.part_o = static_cast<float*>(scratch);
  a.part_ml = a.part_o + n_q * n_heads * splits * D;
  a.positions = positions;
  a.n_heads = n_heads;
  a.window = window;
  a.group = static_cast<int>(G);
  a.scale = scale;
  a.softcap = softcap;
  a.tile_v_offset = (kTile * kv.k.record_bytes + 15) / 16 * 16;
  a.work_bytes = lay.work_bytes;
  const dim3 grid(static_cast<unsigned>(kv.n_kv_heads), static_cast<unsigned>(splits), static_cast<unsigned>(n_q));
  const size_t smem = static_cast<size_t>(lay.total);
  auto launch = [&](auto kernel) { kernel<<<grid, kThreads, smem, stream>>>(a); };
  if (kv.k.qjl) {
    if (D <= 32) launch(tq_attention_kernel<1, true>);
    else if (D <= 64) launch(tq_attention_kernel<2, true>);
    else if (D <= 128) launch(tq_attention_kernel<4, true>);
    else launch(tq_attention_kernel<8, true>);
  } else {
    if (D <= 32) launch(tq_attention_kernel<1, false>);
    else if (D <= 64) launch(tq_attention_kernel<2, false>);
    else if (D <= 128) launch(tq_attention_kernel<4, false>);
    else launch(tq_attention_kernel<8, false>);
  }
  lmlab::cuda::check_launch("TurboQuant attention");
  if (splits > 1) {
    tq_merge_kernel<<<static_cast<unsigned>(n_q * n_heads), kThreads, 0, stream>>>(
        a.part_o, a.part_ml, out, static_cast<int>(D), splits, kv.k.group_dim, kv.rot_d1, kv.rot_d2, kv.rot_inv_sqrt);
    lmlab::cuda::check_launch("TurboQuant attention (merge splits)");
  }
}

}  // namespace lmlab::kernels::cuda
