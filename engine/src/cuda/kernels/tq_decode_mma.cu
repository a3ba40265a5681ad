// Tensor-core flash-decoding over TurboQuant codes: the default K5 / V4 (and K2-K5 / V4) without decoding a code
// to f32 or multiplying it per query head on the CUDA cores.
//
// turboquant.cu's CUDA-core kernel spends ~2,700 instructions per position and KV head at GQA 4 (each code unpacked,
// looked up and multiplied with each of the G query heads in f32) and issues on ~60% of its cycles (thirteenth
// session's ncu): at 40K positions it is slower than the f16 cache it compresses 3.5x. Here both products run on
// mma.m16n8k16 and the codes become the MMA's f16 A operands through tables of codebook values (x kValueScale), exact
// in f16 (lloyd_max.h rounds the centroids to f16 values):
//   - pair tables (the default): a pair of codes to their two values as f16x2, one 4-byte shared load per two
//     coordinates; or (LMLAB_TQ_DECODE_LANE_TABLES=1) a copy of the codebook per lane in its own bank, one
//     conflict-free 4-byte load per coordinate, two loads paired by a byte permute (tq_pair_index.h has the math);
//   - scores S (16 positions x 8 heads) = K (16 x head_dim) Q^T: warp w takes positions 16 w .. 16 w + 15 of the
//     64-position tile as rows, the G <= 8 query heads as columns. The order of k is free as long as the query
//     fragments follow it, so lane (r, c) takes, per 32 dims, byte c of each code plane of rows r and r + 8: its 8
//     codes as 4 pairs, whose plane bits a 2-bit field transpose gathers into the table index (nibbles for 4-bit
//     keys);
//   - values O^T (head_dim x 8 heads) += V^T (head_dim x 64 positions) P^T: warp w takes 16-dim m tiles, the
//     positions are k. The m rows are permuted so that lane r reads byte r of the 16-code word of each of its 4
//     positions, whose two nibbles are its rows r and r + 8; two positions' nibbles form one table index. P times
//     the record's V scalar comes from shared memory as f16 hi + lo, times a power of two per tile that keeps the
//     tile's largest product at most kPScale (normal and finite in f16). With LMLAB_TQ_DECODE_V_REGISTERS=1 the V
//     codebook sits in registers and byte permutes look the codes up (no shared-memory loads; tq_pair_index.h).
// The f32 operands (query, P x V scalar) go in as f16 hi + lo, as in prefill_attention.cuh, and the codes' values are
// exact: two MMAs per product, and the results are the CUDA-core kernel's to f32 rounding (the tensor-core
// tolerance). Tiles, splits, the online softmax, the rotation of the query and of the output, and the merge of the
// splits are the CUDA-core kernel's (tq_records.cuh).
// Measured (fourteenth session, H100, pair tables): slower than the CUDA-core kernel at GQA 4 (107 vs 92 us at 40K
// on the 8B shape), faster at GQA 8 (68 vs 79 on the 30b-a3b shape); its time is flat in the group.
#include "cuda/kernels/tq_decode_mma.cuh"

#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>

#include "cuda/kernels/chained_launch.cuh"
#include "cuda/kernels/prefill_attention.cuh"
#include "cuda/kernels/reduce.cuh"
#include "cuda/kernels/tq_pair_index.h"
#include "lmlab/error.h"

namespace lmlab::kernels::cuda::tq {

namespace {

using prefill::mma_16816;
using prefill::split2;

constexpr float kValueScale = 16.0f;              // codebook values in the tables
constexpr float kQScale = prefill::kQScale;       // the query in its fragments
constexpr float kPScale = 16384.0f;               // a tile's largest P x V scalar goes in as at most this
constexpr float kScoreUnscale = 1.0f / (kQScale * kValueScale);
constexpr int kChunk = 32;                        // dims per step of the scores: one byte of each plane per lane
// Shared-memory row strides chosen so a warp's fragment accesses spread over the 32 banks: the scores' rows [G] of
// kDT + 4 floats (lane (r, c) stores heads 2c, 2c + 1 at position r: banks 8c + r), P x V scalar rows [8 heads] of
// kDT + 8 halves (lane (r, c) loads head r, positions 2c, 2c + 1: banks 4r + c; at kDT halves all 8 heads of a c
// fell on one bank).
constexpr int kScoreStride = kDT + 4, kPvStride = kDT + 8;
constexpr unsigned kMaxSharedBytes = 227 * 1024;  // sm_90's most dynamic shared memory per block

struct MmaLayout {
  int lut_k, lut_v, qf, qs, psc, vfac, pv_hi, pv_lo, wmax, corr, ml, offs, tiles, k_area, v_area, total;
};

MmaLayout mma_layout(const TqKvBlocks& kv, int G, bool lane_tables) {
  const int D = static_cast<int>(kv.head_dim), nvg = kv.v.n_groups;
  const int64_t B = kv.block_tokens;
  const int nseg = static_cast<int>(std::min<int64_t>(kDT, (kDT - 1) / B + 2));  // blocks a tile can touch
  auto r16 = [](int x) { return (x + 15) / 16 * 16; };
  MmaLayout l;
  l.lut_k = 0;
  l.lut_v = l.lut_k + (lane_tables ? (32 << kv.k.bits) : (1 << (2 * kv.k.bits))) * 4;
  l.qf = l.lut_v + (lane_tables ? 16 * 32 : 256) * 4;  // 16 codes x 32 lanes, or 256 pairs, of 4 bytes
  l.qs = l.qf + (D / kChunk) * 32 * 32;  // per chunk and lane: 4 hi and 4 lo f16 pairs
  l.psc = l.qs + r16(G * D * 4);
  l.vfac = l.psc + G * kScoreStride * 4;
  l.pv_hi = l.vfac + nvg * kDT * 4;
  l.pv_lo = l.pv_hi + nvg * 8 * kPvStride * 2;
  l.wmax = l.pv_lo + nvg * 8 * kPvStride * 2;
  l.corr = l.wmax + 4 * 4;
  l.ml = l.corr + 8 * 4;
  l.offs = l.ml + 16 * 4;
  l.tiles = l.offs + 4 * kDT * 2;
  l.k_area = r16(kDT * kv.k.record_bytes + 32 * nseg);
  l.v_area = r16(kDT * kv.v.record_bytes + 32 * nseg);
  l.total = l.tiles + 2 * (l.k_area + l.v_area);
  return l;
}

// Two codebook values x kValueScale as the table's f16x2 entry (a in the low half); exact (lloyd_max.h).
__device__ __forceinline__ uint32_t pair_entry(float a, float b) {
  const __half2 h = __floats2half2_rn(a * kValueScale, b * kValueScale);
  return *reinterpret_cast<const uint32_t*>(&h);
}

// One code's codebook value x kValueScale in f16 (in the low half): a per-lane table's word.
__device__ __forceinline__ uint32_t code_entry(float a) {
  return __half_as_ushort(__float2half_rn(a * kValueScale));
}

// The pair entry of two per-lane table words (the first code's value in the low half).
__device__ __forceinline__ uint32_t lane_pair(uint32_t first, uint32_t second) {
  return byte_perm(first, second, 0x5410);
}

// The table entries of lane c's 4 key pairs in chunk j of group record gr (tq_pair_index.h). kLane: lut is
// [2^KB codes][32 lanes] words, each lane reading its own bank (no conflicts, a load per code); else [4^KB pairs]
// of f16x2 (a load per pair, 32 random addresses).
template <int KB, bool kLane>
__device__ __forceinline__ void key_pairs(const uint8_t* gr, int j, int c, int plane_bytes, const void* lut,
                                          int lane, uint32_t (&e)[4]) {
  if constexpr (kLane) {
    uint32_t code[8];
    key_codes<KB>(gr, j, c, plane_bytes, code);
    const uint32_t* t = static_cast<const uint32_t*>(lut) + lane;
#pragma unroll
    for (int i = 0; i < 4; ++i) e[i] = lane_pair(t[code[2 * i] * 32], t[code[2 * i + 1] * 32]);
  } else {
    uint32_t idx[4];
    key_pair_indices<KB>(gr, j, c, plane_bytes, idx);
#pragma unroll
    for (int i = 0; i < 4; ++i) e[i] = static_cast<const uint32_t*>(lut)[idx[i]];
  }
}

// The value table entries of rows r and r + 8 from z (two positions' bytes r), as key_pairs.
template <bool kLane>
__device__ __forceinline__ void value_pairs(uint32_t z, const void* lut, int lane, uint32_t& row_r,
                                            uint32_t& row_r8) {
  if constexpr (kLane) {
    uint32_t low[2], high[2];
    value_codes(z, low, high);
    const uint32_t* t = static_cast<const uint32_t*>(lut) + lane;
    row_r = lane_pair(t[low[0] * 32], t[low[1] * 32]), row_r8 = lane_pair(t[high[0] * 32], t[high[1] * 32]);
  } else {
    const uint32_t* t = static_cast<const uint32_t*>(lut);
    row_r = t[value_pair_low(z)], row_r8 = t[value_pair_high(z)];
  }
}

// Scores of warp w's 16 positions of the tile for the G heads into psc [G][kScoreStride] (f32, before the softmax
// scale).
template <int KB, bool kLane>
__device__ __forceinline__ void score_tile(const TqKvBlocks& kv, const uint8_t* tk, const uint16_t* ko,
                                           const void* lut_k, const uint4* qf, float* psc, int n, int G, int warp,
                                           int lane) {
  if (16 * warp >= n) return;  // warp-uniform: none of its rows is in the tile
  const int r = lane >> 2, c = lane & 3, pr = 16 * warp + r, pr8 = pr + 8;
  const TqDeviceCodec& k = kv.k;
  const int g = k.group_dim, plane_bytes = g / 8, chunks = g / kChunk;
  // Rows past the tile read its last record (their scores are never used).
  const uint8_t* rec = tk + ko[min(pr, n - 1)];
  const uint8_t* rec8 = tk + ko[min(pr8, n - 1)];
  float s[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  for (int gi = 0; gi < k.n_groups; ++gi) {
    const uint8_t* gr = rec + gi * k.group_bytes;
    const uint8_t* gr8 = rec8 + gi * k.group_bytes;
    float cg[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int j = 0; j < chunks; ++j) {
      uint32_t e[4], e8[4];
      key_pairs<KB, kLane>(gr, j, c, plane_bytes, lut_k, lane, e);
      key_pairs<KB, kLane>(gr8, j, c, plane_bytes, lut_k, lane, e8);
      const uint4* q = qf + 64 * (gi * chunks + j) + lane;
      const uint4 qh = q[0], ql = q[32];
      // k step 0: pairs 0 (A columns 2c, 2c + 1) and 1 (2c + 8, 2c + 9); k step 1: pairs 2 and 3.
      const uint32_t a0[4] = {e[0], e8[0], e[1], e8[1]}, a1[4] = {e[2], e8[2], e[3], e8[3]};
      mma_16816(cg, a0, qh.x, qh.y), mma_16816(cg, a0, ql.x, ql.y);
      mma_16816(cg, a1, qh.z, qh.w), mma_16816(cg, a1, ql.z, ql.w);
    }
    const float f = load_half(gr + k.scalar_offset), f8 = load_half(gr8 + k.scalar_offset);
    s[0] = fmaf(f, cg[0], s[0]), s[1] = fmaf(f, cg[1], s[1]);
    s[2] = fmaf(f8, cg[2], s[2]), s[3] = fmaf(f8, cg[3], s[3]);
  }
  const int h = 2 * c;  // C columns 2c, 2c + 1: heads
  float* row = psc + h * kScoreStride;
  if (h < G) row[pr] = s[0] * kScoreUnscale, row[pr8] = s[2] * kScoreUnscale;
  if (h + 1 < G) row[kScoreStride + pr] = s[1] * kScoreUnscale, row[kScoreStride + pr8] = s[3] * kScoreUnscale;
}

// O^T (head_dim x heads) += V^T P^T over the tile's n positions for warp w's m tiles mt = w + 4 m (16 dims each),
// into t[m] (C fragments: rows r, r + 8 = dims, columns 2c, 2c + 1 = heads). Lane (r, c) reads byte r of each m
// tile's 16-code word of positions 16 ks + 2c, + 1, + 8, + 9: low nibble row r, high nibble row r + 8 (entries
// 4 (r % 4) + r / 4 and that + 2 of the word). The positions' records are found once per k step for every m tile.
template <int MT, bool kLane, bool kVReg>
__device__ __forceinline__ void value_tile(const TqKvBlocks& kv, const uint8_t* tv, const uint16_t* vo,
                                           const void* lut_v, const RegisterTable16& vreg, const __half* pv_hi,
                                           const __half* pv_lo, int n, int warp, int lane, float (&t)[MT][4]) {
  const int r = lane >> 2, c = lane & 3, D = static_cast<int>(kv.head_dim);
  const TqDeviceCodec& v = kv.v;
  const int log_g = __ffs(v.group_dim) - 1;
  for (int ks = 0; ks < kDT / 16 && 16 * ks < n; ++ks) {
    const int p0 = 16 * ks + 2 * c;
    const uint8_t* rec[4] = {tv + vo[min(p0, n - 1)] + r, tv + vo[min(p0 + 1, n - 1)] + r,
                             tv + vo[min(p0 + 8, n - 1)] + r, tv + vo[min(p0 + 9, n - 1)] + r};
#pragma unroll
    for (int m = 0; m < MT; ++m) {
      const int mt = warp + 4 * m;
      if (16 * mt >= D) break;  // warp-uniform
      const int gi = (16 * mt) >> log_g, u = ((16 * mt) & (v.group_dim - 1)) >> 4;
      const int boff = gi * v.group_bytes + 8 * u;
      const uint32_t z01 = static_cast<uint32_t>(rec[0][boff]) | static_cast<uint32_t>(rec[1][boff]) << 8;
      const uint32_t z89 = static_cast<uint32_t>(rec[2][boff]) | static_cast<uint32_t>(rec[3][boff]) << 8;
      uint32_t av[4];
      if constexpr (kVReg) {
        value_pairs_in_registers(z01, vreg, av[0], av[1]);
        value_pairs_in_registers(z89, vreg, av[2], av[3]);
      } else {
        value_pairs<kLane>(z01, lut_v, lane, av[0], av[1]);
        value_pairs<kLane>(z89, lut_v, lane, av[2], av[3]);
      }
      // B column (head) r, rows (positions) p0, p0 + 1 and p0 + 8, p0 + 9 of the group's P x V scalar.
      const int pb = (gi * 8 + r) * kPvStride + p0;
      const uint32_t bh0 = *reinterpret_cast<const uint32_t*>(pv_hi + pb);
      const uint32_t bh1 = *reinterpret_cast<const uint32_t*>(pv_hi + pb + 8);
      const uint32_t bl0 = *reinterpret_cast<const uint32_t*>(pv_lo + pb);
      const uint32_t bl1 = *reinterpret_cast<const uint32_t*>(pv_lo + pb + 8);
      mma_16816(t[m], av, bh0, bh1), mma_16816(t[m], av, bl0, bl1);
    }
  }
}

// Block = (KV head, split, query), 4 warps; MT: the most 16-dim m tiles a warp takes (head_dim <= 64 MT). Five
// blocks per SM fit the shared memory at head_dim 128 (~42 KB); asking for them also keeps ptxas from spilling (it
// chose 64-80 registers with spills unbounded, 84-91 without them bounded).
template <int KB, int MT, bool kLane, bool kVReg>
__global__ void __launch_bounds__(kDThreads, 5) tq_decode_mma_kernel(TqAttnParams a, MmaLayout L) {
  chain_enter();
  extern __shared__ __align__(16) uint8_t smem[];
  const TqKvBlocks& kv = a.kv;
  const int64_t kh = blockIdx.x, split = blockIdx.y, t = blockIdx.z;
  const int splits = gridDim.y, lane = threadIdx.x & 31, warp = threadIdx.x >> 5, r = lane >> 2, c = lane & 3;
  const int D = static_cast<int>(kv.head_dim), G = a.group, g = kv.k.group_dim, nvg = kv.v.n_groups;
  void* lut_k = smem + L.lut_k;
  void* lut_v = smem + L.lut_v;
  uint4* qf = reinterpret_cast<uint4*>(smem + L.qf);
  float* qs = reinterpret_cast<float*>(smem + L.qs);
  float* psc = reinterpret_cast<float*>(smem + L.psc);
  float* vfac = reinterpret_cast<float*>(smem + L.vfac);
  __half* pv_hi = reinterpret_cast<__half*>(smem + L.pv_hi);
  __half* pv_lo = reinterpret_cast<__half*>(smem + L.pv_lo);
  float* wmax = reinterpret_cast<float*>(smem + L.wmax);
  float* corr_s = reinterpret_cast<float*>(smem + L.corr);
  float* ml_s = reinterpret_cast<float*>(smem + L.ml);
  uint16_t* offs = reinterpret_cast<uint16_t*>(smem + L.offs);  // [2 buffers][K, V][kDT]
  uint8_t* tiles = smem + L.tiles;
  const int buf_bytes = L.k_area + L.v_area;

  const SplitRange range = split_range(a, t, split, splits);

  // Tile 0's copies go first, to overlap the tables and the query's rotation.
  first_tile(kv, kh, range, tiles, offs, L.k_area);

  if constexpr (kLane) {
    for (int i = threadIdx.x; i < (32 << KB); i += kDThreads)
      static_cast<uint32_t*>(lut_k)[i] = code_entry(kv.k.centroids[i >> 5]);
    if constexpr (!kVReg)
      for (int i = threadIdx.x; i < 16 * 32; i += kDThreads)
        static_cast<uint32_t*>(lut_v)[i] = code_entry(kv.v.centroids[i >> 5]);
  } else {
    for (int i = threadIdx.x; i < (1 << (2 * KB)); i += kDThreads) {
      int first, second;
      key_pair_codes<KB>(i, first, second);
      static_cast<uint32_t*>(lut_k)[i] = pair_entry(kv.k.centroids[first], kv.k.centroids[second]);
    }
    if constexpr (!kVReg)
      for (int i = threadIdx.x; i < 256; i += kDThreads)
        static_cast<uint32_t*>(lut_v)[i] = pair_entry(kv.v.centroids[i & 15], kv.v.centroids[i >> 4]);
  }
  RegisterTable16 vreg{};
  if constexpr (kVReg) {
    uint16_t entry[16];
#pragma unroll
    for (int k = 0; k < 16; ++k) entry[k] = static_cast<uint16_t>(code_entry(kv.v.centroids[k]));
    vreg = register_table16(entry);
  }
  for (int e = threadIdx.x; e < G * D; e += kDThreads) qs[e] = a.q[(t * a.n_heads + kh * G) * D + e];
  // The heads past G are zero columns of P^T for the whole block.
  for (int e = threadIdx.x; e < nvg * 8 * kPvStride; e += kDThreads) pv_hi[e] = pv_lo[e] = __ushort_as_half(0);
  __syncthreads();
  if (kv.rot_d1) block_rotate(qs, G, D, g, kv.rot_d1, kv.rot_d2, kv.rot_inv_sqrt);
  // Query fragments: lane (head r, c) of chunk j holds q[r][32 j + 8 c + 0 .. 7] x kQScale as 4 hi and 4 lo pairs
  // (the B operand of both k steps: pairs 0, 1 for the first, 2, 3 for the second); zeros past G.
  for (int e = threadIdx.x; e < (D / kChunk) * 32; e += kDThreads) {
    const int j = e >> 5, h = (e & 31) >> 2, cc = e & 3;
    const float* x = qs + h * D + kChunk * j + 8 * cc;
    uint32_t hi[4], lo4[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float x0 = h < G ? x[2 * i] * kQScale : 0.0f, x1 = h < G ? x[2 * i + 1] * kQScale : 0.0f;
      split2(x0, x1, hi[i], lo4[i]);
    }
    qf[2 * e - (e & 31)] = make_uint4(hi[0], hi[1], hi[2], hi[3]);  // [chunk][hi, lo][lane]: a warp's loads of
    qf[2 * e - (e & 31) + 32] = make_uint4(lo4[0], lo4[1], lo4[2], lo4[3]);  // one part are 512 contiguous bytes
  }

  float acc[MT][4];
#pragma unroll
  for (int m = 0; m < MT; ++m)
#pragma unroll
    for (int i = 0; i < 4; ++i) acc[m][i] = 0.0f;
  float m_run[2] = {-INFINITY, -INFINITY}, l_run[2] = {0.0f, 0.0f};  // heads warp and warp + 4

  for (int64_t it = 0; it < range.n_tiles; ++it) {
    async_wait<0>();
    __syncthreads();  // tile it is in; every thread is done with tile it - 1 (its buffer, pv, corr)
    const int buf = static_cast<int>(it & 1);
    const int n = next_tile(kv, kh, range, it, tiles, offs, L.k_area, buf_bytes);
    const uint8_t* tk = tiles + buf * buf_bytes;
    const uint8_t* tv = tk + L.k_area;
    const uint16_t* ko = offs + buf * 2 * kDT;
    const uint16_t* vo = ko + kDT;

    // The V scalars of the tile [nvg][kDT] and their largest magnitude (per warp, then over the block below).
    float vmax = 0.0f;
    for (int e = threadIdx.x; e < nvg * kDT; e += kDThreads) {
      const int gi = e / kDT, p = e - gi * kDT;
      const float f = p < n ? load_half(tv + vo[p] + gi * kv.v.group_bytes + kv.v.scalar_offset) : 0.0f;
      vfac[e] = f;
      vmax = fmaxf(vmax, fabsf(f));
    }
    vmax = warp_max(vmax);
    if (lane == 0) wmax[warp] = vmax;

    score_tile<KB, kLane>(kv, tk, ko, lut_k, qf, psc, n, G, warp, lane);
    __syncthreads();

    // P x V scalar x 2^(14 - e), where 2^e > the tile's largest scalar: at most kPScale.
    const float vm = fmaxf(fmaxf(wmax[0], wmax[1]), fmaxf(wmax[2], wmax[3]));
    int e2 = 0;
    if (vm > 0.0f && vm <= 65504.0f) frexpf(vm, &e2);
    const float p_scale = ldexpf(kPScale, -e2), p_unscale = ldexpf(1.0f / (kPScale * kValueScale), e2);

    // Softmax (tile_softmax, as the CUDA-core kernel): warp w owns heads w and w + 4.
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) {
      const int h = warp + 4 * hh;
      if (h >= G) break;
      float pr[kDT / 32];
      const float corr = tile_softmax([&](int p) { return psc[h * kScoreStride + p]; }, n, a.scale, a.softcap, lane,
                                      m_run[hh], l_run[hh], pr);
#pragma unroll
      for (int k = 0; k < kDT / 32; ++k) {
        const int p = lane + 32 * k;
        for (int gi = 0; gi < nvg; ++gi) {
          const float x = pr[k] * vfac[gi * kDT + p] * p_scale;
          const __half xh = __float2half_rn(x);
          pv_hi[(gi * 8 + h) * kPvStride + p] = xh;
          pv_lo[(gi * 8 + h) * kPvStride + p] = __float2half_rn(x - __half2float(xh));
        }
      }
      if (lane == 0) corr_s[h] = corr;
    }
    __syncthreads();

    const float cr0 = 2 * c < G ? corr_s[2 * c] : 1.0f, cr1 = 2 * c + 1 < G ? corr_s[2 * c + 1] : 1.0f;
    float tt[MT][4];
#pragma unroll
    for (int m = 0; m < MT; ++m)
#pragma unroll
      for (int i = 0; i < 4; ++i) tt[m][i] = 0.0f;
    value_tile<MT, kLane, kVReg>(kv, tv, vo, lut_v, vreg, pv_hi, pv_lo, n, warp, lane, tt);
#pragma unroll
    for (int m = 0; m < MT; ++m) {
      acc[m][0] = fmaf(acc[m][0], cr0, tt[m][0] * p_unscale), acc[m][1] = fmaf(acc[m][1], cr1, tt[m][1] * p_unscale);
      acc[m][2] = fmaf(acc[m][2], cr0, tt[m][2] * p_unscale), acc[m][3] = fmaf(acc[m][3], cr1, tt[m][3] * p_unscale);
    }
  }

  if (lane == 0) {
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) {
      const int h = warp + 4 * hh;
      if (h < G) ml_s[2 * h] = m_run[hh], ml_s[2 * h + 1] = l_run[hh];
    }
  }
  __syncthreads();  // ml_s is in; qs is no longer read (it takes the outputs below)
  float* ob = qs;   // [G][D] normalised outputs in the rotated domain (no splits)
#pragma unroll
  for (int m = 0; m < MT; ++m) {
    const int mt = warp + 4 * m;
    if (16 * mt >= D) break;
    const int d0 = value_row_dim(mt, r), d1 = value_row_dim(mt, r + 8);
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const int h = 2 * c + e;
      if (h >= G) break;
      if (splits > 1) {
        float* o = a.part_o + ((t * a.n_heads + kh * G + h) * splits + split) * D;
        o[d0] = acc[m][e], o[d1] = acc[m][2 + e];
      } else {
        const float l = ml_s[2 * h + 1];
        ob[h * D + d0] = l > 0.0f ? acc[m][e] / l : 0.0f;
        ob[h * D + d1] = l > 0.0f ? acc[m][2 + e] / l : 0.0f;
      }
    }
  }
  if (splits > 1) {
    if (threadIdx.x < G) {
      const int h = threadIdx.x;
      const int64_t slot = (t * a.n_heads + kh * G + h) * splits + split;
      a.part_ml[slot * 2] = ml_s[2 * h], a.part_ml[slot * 2 + 1] = ml_s[2 * h + 1];
    }
    return;  // uniform over the block
  }
  __syncthreads();
  if (kv.rot_d1) block_rotate(ob, G, D, g, kv.rot_d2, kv.rot_d1, kv.rot_inv_sqrt);  // Pi^T = D1 H D2 / sqrt(g)
  for (int e = threadIdx.x; e < G * D; e += kDThreads) a.out[(t * a.n_heads + kh * G) * D + e] = ob[e];
}

template <int KB, int MT, bool kLane, bool kVReg>
void launch(const TqAttnParams& a, const MmaLayout& l, dim3 grid, cudaStream_t stream) {
  static SharedMemoryGrant grant;
  auto kernel = tq_decode_mma_kernel<KB, MT, kLane, kVReg>;
  if (l.total > 48 * 1024)
    opt_in_shared_memory(kernel, static_cast<unsigned>(l.total), grant, "TurboQuant tensor-core decode shared memory");
  launch_chained("TurboQuant attention (tensor cores)", kernel, grid, kDThreads, static_cast<size_t>(l.total), stream,
                 a, l);
}

template <int MT, bool kLane, bool kVReg>
void launch_bits(const TqAttnParams& a, const MmaLayout& l, dim3 grid, cudaStream_t stream) {
  switch (a.kv.k.bits) {
    case 2: launch<2, MT, kLane, kVReg>(a, l, grid, stream); break;
    case 3: launch<3, MT, kLane, kVReg>(a, l, grid, stream); break;
    case 4: launch<4, MT, kLane, kVReg>(a, l, grid, stream); break;
    default: launch<5, MT, kLane, kVReg>(a, l, grid, stream); break;
  }
}

template <bool kLane, bool kVReg>
void launch_dims(const TqAttnParams& a, const MmaLayout& l, dim3 grid, cudaStream_t stream) {
  if (a.kv.head_dim <= 64) launch_bits<1, kLane, kVReg>(a, l, grid, stream);
  else if (a.kv.head_dim <= 128) launch_bits<2, kLane, kVReg>(a, l, grid, stream);
  else launch_bits<4, kLane, kVReg>(a, l, grid, stream);
}

}  // namespace

bool decode_mma_supports(const TqKvBlocks& kv) {
  const TqDeviceCodec &k = kv.k, &v = kv.v;
  return k.scheme == kTqLloydMax && !k.qjl && k.bits >= 2 && k.bits <= 5 && v.scheme == kTqLloydMax && !v.qjl &&
         v.bits == 4 && k.group_dim >= kChunk && v.group_dim >= 16 && kv.head_dim % kChunk == 0 &&
         kv.head_dim <= 256;
}

void decode_mma(const TqAttnParams& a, int splits, int64_t n_q, cudaStream_t stream) {
  const DecodeOptions o = decode_options();
  const bool lane_tables = o.tq_decode_lane_tables;
  const MmaLayout l = mma_layout(a.kv, a.group, lane_tables);
  // At most ~120 KB for the formats decode_mma_supports takes (head_dim 256, GQA 8, 1-token KV blocks).
  if (l.total > static_cast<int>(kMaxSharedBytes))
    throw Error(ErrorKind::internal, "cuda TurboQuant attention", "tensor-core decode layout exceeds shared memory");
  const dim3 grid(static_cast<unsigned>(a.kv.n_kv_heads), static_cast<unsigned>(splits), static_cast<unsigned>(n_q));
  if (lane_tables) o.tq_decode_v_registers ? launch_dims<true, true>(a, l, grid, stream)
                                           : launch_dims<true, false>(a, l, grid, stream);
  else o.tq_decode_v_registers ? launch_dims<false, true>(a, l, grid, stream)
                               : launch_dims<false, false>(a, l, grid, stream);
}

}  // namespace lmlab::kernels::cuda::tq
