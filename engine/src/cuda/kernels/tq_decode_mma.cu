// Tensor-core flash-decoding over TurboQuant codes: the default K5 / V4 (and K2-K5 / V4) without decoding a code
// to f32 or multiplying it per query head on the CUDA cores.
//
// turboquant.cu's CUDA-core kernel spends ~2,700 instructions per position and KV head at GQA 4 (each code unpacked,
// looked up and multiplied with each of the G query heads in f32) and issues on ~60% of its cycles (thirteenth
// session's ncu): at 40K positions it is slower than the f16 cache it compresses 3.5x. Here both products run on
// mma.m16n8k16 and the codes become the MMA's f16 A operands through tables of codebook values (x kValueScale), exact
// in f16 (lloyd_max.h rounds the centroids to f16 values):
//   - pair tables: a pair of codes to their two values as f16x2, one 4-byte shared load per two coordinates
//     (tq_pair_index.h has the index math). Measured against a codebook copy per lane (conflict-free, a load per
//     code) and the V codebook in registers (byte permutes, no load): both slower (fifteenth session, docs/cuda.md);
//   - scores S (16 positions x 8 heads) = K (16 x head_dim) Q^T: warp w takes positions 16 w .. 16 w + 15 of the
//     64-position tile as rows, the G <= 8 query heads as columns. The order of k is free as long as the query
//     fragments follow it, so lane (r, c) takes, per 32 dims, byte c of each code plane of rows r and r + 8: its 8
//     codes as 4 pairs, whose plane bits a 2-bit field transpose gathers into the table index (nibbles for 4-bit
//     keys);
//   - values O^T (head_dim x 8 heads) += V^T (head_dim x 64 positions) P^T: warp w takes 16-dim m tiles, the
//     positions are k. The m rows are permuted so that lane r reads byte r of the 16-code word of each of its 4
//     positions, whose two nibbles are its rows r and r + 8; two positions' nibbles form one table index. P times
//     the record's V scalar comes from shared memory as f16 hi + lo, times a power of two per tile that keeps the
//     tile's largest product at most kPScale (normal and finite in f16).
// The f32 operands (query, P x V scalar) go in as f16 hi + lo, as in prefill_attention.cuh, and the codes' values are
// exact: two MMAs per product, and the results are the CUDA-core kernel's to f32 rounding (the tensor-core
// tolerance). Tiles, splits, the online softmax, the rotation of the query and of the output, and the merge of the
// splits are the CUDA-core kernel's (tq_records.cuh).
// Measured (fifteenth session, H100, exact f16 codes): faster than the CUDA-core kernel at GQA 4 (79.6 vs 93.8 us at
// 40K on the 8B shape) and GQA 8 (53.4 vs 81.8 on the 30b-a3b shape); its time is flat in the group.
#include "cuda/kernels/tq_decode_mma.cuh"

#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>

#include "cuda/kernels/chained_launch.cuh"
#include "cuda/kernels/reduce.cuh"
#include "cuda/kernels/tq_mma_common.cuh"
#include "lmlab/error.h"

namespace lmlab::kernels::cuda::tq {

namespace {

using namespace mma;

// Shared-memory row strides chosen so a warp's fragment accesses spread over the 32 banks: the scores' rows [G] of
// kDT + 4 floats (lane (r, c) stores heads 2c, 2c + 1 at position r: banks 8c + r), P x V scalar rows [8 heads] of
// kDT + 8 halves (lane (r, c) loads head r, positions 2c, 2c + 1: banks 4r + c; at kDT halves all 8 heads of a c
// fell on one bank).
constexpr int kScoreStride = kDT + 4, kPvStride = kDT + 8;
constexpr int kGroup128 = 128;  // keys in groups of 128 take constant plane offsets (score_tile's KG)

struct MmaLayout {
  SetupLayout s;
  int psc, vfac, pv_hi, pv_lo, wmax, corr, ml, offs, tiles, k_area, v_area, total;
};

MmaLayout mma_layout(const TqKvBlocks& kv, int G) {
  const int nvg = kv.v.n_groups;
  MmaLayout l;
  l.s = setup_layout(kv, G);
  l.psc = l.s.end;
  l.vfac = l.psc + G * kScoreStride * 4;
  l.pv_hi = l.vfac + nvg * kDT * 4;
  l.pv_lo = l.pv_hi + nvg * 8 * kPvStride * 2;
  l.wmax = l.pv_lo + nvg * 8 * kPvStride * 2;
  l.corr = l.wmax + 4 * 4;
  l.ml = l.corr + 8 * 4;
  l.offs = l.ml + 16 * 4;
  l.tiles = l.offs + 4 * kDT * 2;
  l.k_area = staged_records_bytes(kv.k.record_bytes, kv.block_tokens);
  l.v_area = staged_records_bytes(kv.v.record_bytes, kv.block_tokens);
  l.total = l.tiles + 2 * (l.k_area + l.v_area);
  return l;
}

// Scores of warp w's 16 positions of the tile for the G heads into psc [G][kScoreStride] (f32, before the softmax
// scale). KG: the keys' group dim when it is kGroup128 (the plane offsets become constants and the chunks unroll, so
// the scheduler interleaves their index chains: ncu saw the warps waiting on them), else 0 (read from the codec).
template <int KB, int KG>
__device__ __forceinline__ void score_tile(const TqKvBlocks& kv, const uint8_t* tk, const uint16_t* ko,
                                           const uint32_t* lut_k, const uint4* qf, float* psc, int n, int G, int warp,
                                           int lane) {
  if (16 * warp >= n) return;  // warp-uniform: none of its rows is in the tile
  const int r = lane >> 2, c = lane & 3, pr = 16 * warp + r, pr8 = pr + 8;
  const TqDeviceCodec& k = kv.k;
  const int g = KG ? KG : k.group_dim, plane_bytes = g / 8, chunks = g / kChunk;
  // Rows past the tile read its last record (issue_tile's padded offsets; their scores are never used).
  const uint8_t* rec = tk + ko[pr];
  const uint8_t* rec8 = tk + ko[pr8];
  float s[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  for (int gi = 0; gi < k.n_groups; ++gi) {
    const uint8_t* gr = rec + gi * k.group_bytes;
    const uint8_t* gr8 = rec8 + gi * k.group_bytes;
    float cg[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll(KG ? KG / kChunk : 1)
    for (int j = 0; j < chunks; ++j) {
      uint32_t e[4], e8[4];
      key_pairs<KB>(gr, j, c, plane_bytes, lut_k, e);
      key_pairs<KB>(gr8, j, c, plane_bytes, lut_k, e8);
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

// Where lane (r, c) of warp w reads its m tiles mt = w + 4 m (16 dims each) in every tile (value_tile): byte r of
// the tile's 16-code word in a V record, and the P x V scalar rows of its head r from position 2c (halves).
template <int MT>
struct ValueLane {
  int byte[MT], pv[MT];
};
template <int MT>
__device__ __forceinline__ ValueLane<MT> value_lane(const TqKvBlocks& kv, int warp, int lane) {
  const int r = lane >> 2, c = lane & 3, log_g = __ffs(kv.v.group_dim) - 1;
  ValueLane<MT> vl;
#pragma unroll
  for (int m = 0; m < MT; ++m) {
    const int d0 = 16 * (warp + 4 * m);  // past head_dim: never read (value_tile stops there)
    const int gi = d0 >> log_g, u = (d0 & (kv.v.group_dim - 1)) >> 4;
    vl.byte[m] = gi * kv.v.group_bytes + 8 * u + r;
    vl.pv[m] = (gi * 8 + r) * kPvStride + 2 * c;
  }
  return vl;
}

// O^T (head_dim x heads) += V^T P^T over the tile's n positions for warp w's m tiles mt = w + 4 m, into t[m] (C
// fragments: rows r, r + 8 = dims, columns 2c, 2c + 1 = heads). Lane (r, c) reads byte r of each m tile's 16-code
// word of positions 16 ks + 2c, + 1, + 8, + 9: low nibble row r, high nibble row r + 8 (entries 4 (r % 4) + r / 4
// and that + 2 of the word). The k steps are unrolled, the lane's offsets are set once per block (value_lane) and
// the tile's padded offsets need no clamp: the addresses take no arithmetic a k step beyond the records'.
// kFull: a tile of kDT positions (no k step to skip, so the steps' loads may interleave).
template <int MT, bool kFull>
__device__ __forceinline__ void value_tile(const uint8_t* tv, const uint16_t* vo, const uint32_t* lut_v,
                                           const __half* pv_hi, const __half* pv_lo, int n, int D, int warp, int lane,
                                           const ValueLane<MT>& vl, float (&t)[MT][4]) {
  const int c2 = 2 * (lane & 3);
#pragma unroll
  for (int ks = 0; ks < kDT / 16; ++ks) {
    if (!kFull && 16 * ks >= n) break;  // block-uniform
    // Offsets of positions p0 = 16 ks + 2c, p0 + 1 and p0 + 8, p0 + 9 (p0 even: one 4-byte load each).
    const uint32_t o01 = *reinterpret_cast<const uint32_t*>(vo + 16 * ks + c2);
    const uint32_t o89 = *reinterpret_cast<const uint32_t*>(vo + 16 * ks + c2 + 8);
    const uint8_t *r0 = tv + (o01 & 0xFFFFu), *r1 = tv + (o01 >> 16);
    const uint8_t *r8 = tv + (o89 & 0xFFFFu), *r9 = tv + (o89 >> 16);
#pragma unroll
    for (int m = 0; m < MT; ++m) {
      if (16 * (warp + 4 * m) >= D) break;  // warp-uniform
      const int b = vl.byte[m];
      const uint32_t z01 = static_cast<uint32_t>(r0[b]) | static_cast<uint32_t>(r1[b]) << 8;
      const uint32_t z89 = static_cast<uint32_t>(r8[b]) | static_cast<uint32_t>(r9[b]) << 8;
      // A operand rows r, r + 8 of the two k halves: the value table's pairs at the bytes' low and high nibbles.
      const uint32_t av[4] = {lut_v[value_pair_low(z01)], lut_v[value_pair_high(z01)], lut_v[value_pair_low(z89)],
                              lut_v[value_pair_high(z89)]};
      // B column (head) r, rows (positions) p0, p0 + 1 and p0 + 8, p0 + 9 of the group's P x V scalar.
      const __half* ph = pv_hi + vl.pv[m] + 16 * ks;
      const __half* pl = pv_lo + vl.pv[m] + 16 * ks;
      mma_16816(t[m], av, *reinterpret_cast<const uint32_t*>(ph), *reinterpret_cast<const uint32_t*>(ph + 8));
      mma_16816(t[m], av, *reinterpret_cast<const uint32_t*>(pl), *reinterpret_cast<const uint32_t*>(pl + 8));
    }
  }
}

// Block = (KV head, split, query), 4 warps; MT: the most 16-dim m tiles a warp takes (head_dim <= 64 MT). Five
// blocks per SM fit the shared memory at head_dim 128 (~42 KB); asking for them also keeps ptxas from spilling (it
// chose 64-80 registers with spills unbounded, 84-91 without them bounded).
template <int KB, int MT, int KG>
__global__ void __launch_bounds__(kDThreads, 5) tq_decode_mma_kernel(TqAttnParams a, MmaLayout L) {
  extern __shared__ __align__(16) uint8_t smem[];
  const TqKvBlocks& kv = a.kv;
  const int64_t kh = blockIdx.x, split = blockIdx.y, t = blockIdx.z;
  const int splits = gridDim.y, lane = threadIdx.x & 31, warp = threadIdx.x >> 5, r = lane >> 2, c = lane & 3;
  const int D = static_cast<int>(kv.head_dim), G = a.group, g = kv.k.group_dim, nvg = kv.v.n_groups;
  uint32_t* lut_k = reinterpret_cast<uint32_t*>(smem + L.s.lut_k);
  uint32_t* lut_v = reinterpret_cast<uint32_t*>(smem + L.s.lut_v);
  uint4* qf = reinterpret_cast<uint4*>(smem + L.s.qf);
  float* qs = reinterpret_cast<float*>(smem + L.s.qs);
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

  EncodeGate gate = enter_decode(a);
  const SplitRange range = split_range(a, t, split, splits);

  // Tile 0's copies go first, to overlap the tables and the query's rotation.
  first_tile(kv, kh, range, tiles, offs, L.k_area, gate);

  // The heads past G are zero columns of P^T for the whole block.
  for (int e = threadIdx.x; e < nvg * 8 * kPvStride; e += kDThreads) pv_hi[e] = pv_lo[e] = __ushort_as_half(0);
  block_setup<KB>(a, t, kh, lut_k, lut_v, qs, qf);

  float acc[MT][4];
#pragma unroll
  for (int m = 0; m < MT; ++m)
#pragma unroll
    for (int i = 0; i < 4; ++i) acc[m][i] = 0.0f;
  float m_run[2] = {-INFINITY, -INFINITY}, l_run[2] = {0.0f, 0.0f};  // heads warp and warp + 4
  const ValueLane<MT> vl = value_lane<MT>(kv, warp, lane);

  for (int64_t it = 0; it < range.n_tiles; ++it) {
    async_wait<0>();
    __syncthreads();  // tile it is in; every thread is done with tile it - 1 (its buffer, pv, corr)
    const int buf = static_cast<int>(it & 1);
    const int n = next_tile(kv, kh, range, it, tiles, offs, L.k_area, buf_bytes, gate);
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

    score_tile<KB, KG>(kv, tk, ko, lut_k, qf, psc, n, G, warp, lane);
    __syncthreads();

    // P x V scalar x 2^(14 - e), where 2^e > the tile's largest scalar: at most kPScale.
    const float vm = fmaxf(fmaxf(wmax[0], wmax[1]), fmaxf(wmax[2], wmax[3]));
    const int e2 = pv_exponent(vm);
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
    if (n == kDT) value_tile<MT, true>(tv, vo, lut_v, pv_hi, pv_lo, n, D, warp, lane, vl, tt);
    else value_tile<MT, false>(tv, vo, lut_v, pv_hi, pv_lo, n, D, warp, lane, vl, tt);
#pragma unroll
    for (int m = 0; m < MT; ++m) {
      acc[m][0] = fmaf(acc[m][0], cr0, tt[m][0] * p_unscale), acc[m][1] = fmaf(acc[m][1], cr1, tt[m][1] * p_unscale);
      acc[m][2] = fmaf(acc[m][2], cr0, tt[m][2] * p_unscale), acc[m][3] = fmaf(acc[m][3], cr1, tt[m][3] * p_unscale);
    }
  }
  gate.finish();

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

template <int KB, int MT, int KG>
void launch(const TqAttnParams& a, const MmaLayout& l, dim3 grid, cudaStream_t stream) {
  static SharedMemoryGrant grant;
  auto kernel = tq_decode_mma_kernel<KB, MT, KG>;
  if (l.total > 48 * 1024)
    opt_in_shared_memory(kernel, static_cast<unsigned>(l.total), grant, "TurboQuant tensor-core decode shared memory");
  launch_chained("TurboQuant attention (tensor cores)", kernel, grid, kDThreads, static_cast<size_t>(l.total), stream,
                 a, l);
}

template <int MT, int KG>
void launch_bits(const TqAttnParams& a, const MmaLayout& l, dim3 grid, cudaStream_t stream) {
  switch (a.kv.k.bits) {
    case 2: launch<2, MT, KG>(a, l, grid, stream); break;
    case 3: launch<3, MT, KG>(a, l, grid, stream); break;
    case 4: launch<4, MT, KG>(a, l, grid, stream); break;
    default: launch<5, MT, KG>(a, l, grid, stream); break;
  }
}
// Keys in groups of 128 (head_dim 128 and 256) take the score with constant plane offsets.
template <int MT>
void launch_group(const TqAttnParams& a, const MmaLayout& l, dim3 grid, cudaStream_t stream) {
  if (a.kv.k.group_dim == kGroup128) launch_bits<MT, kGroup128>(a, l, grid, stream);
  else launch_bits<MT, 0>(a, l, grid, stream);
}

}  // namespace

bool decode_mma_supports(const TqKvBlocks& kv) {
  const TqDeviceCodec &k = kv.k, &v = kv.v;
  return k.scheme == kTqLloydMax && !k.qjl && k.bits >= 2 && k.bits <= 5 && v.scheme == kTqLloydMax && !v.qjl &&
         v.bits == 4 && k.group_dim >= kChunk && v.group_dim >= 16 && kv.head_dim % kChunk == 0 &&
         kv.head_dim <= 256;
}

void decode_mma(const TqAttnParams& a, int splits, int64_t n_q, cudaStream_t stream) {
  const MmaLayout l = mma_layout(a.kv, a.group);
  // At most ~120 KB for the formats decode_mma_supports takes (head_dim 256, GQA 8, 1-token KV blocks).
  if (l.total > static_cast<int>(kMaxSharedBytes))
    throw Error(ErrorKind::internal, "cuda TurboQuant attention", "tensor-core decode layout exceeds shared memory");
  const dim3 grid(static_cast<unsigned>(a.kv.n_kv_heads), static_cast<unsigned>(splits), static_cast<unsigned>(n_q));
  if (a.kv.head_dim <= 64) launch_bits<1, 0>(a, l, grid, stream);  // groups of at most 64
  else if (a.kv.head_dim <= 128) launch_group<2>(a, l, grid, stream);
  else launch_group<4>(a, l, grid, stream);
}

}  // namespace lmlab::kernels::cuda::tq
