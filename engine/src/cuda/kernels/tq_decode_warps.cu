// Tensor-core flash-decoding over TurboQuant codes with each warp owning 16 positions of a tile and all their dims
// (the FlashAttention-2 arrangement), for head_dim 64 / 128 (one value group a head) at GQA <= 8.
//
// tq_decode_mma.cu's warps own 16-dim slices of every position, so a tile's scores, softmax and P x V scalars pass
// through shared memory between three block barriers (ncu, sixteenth session: 1,650 warp instructions per tile and
// warp, 30% of stalls on ALU chains and 19% on shared loads at ~4 warps a scheduler). Here the scores and P stay in
// the registers of the warp that computed them:
//   - scores S^T (16 rows x 8 positions) = Q K^T: rows 0-7 are the G <= 8 query heads' f16 hi parts, rows 8-15 their
//     lo parts (one MMA multiplies both; a lane adds its rows r and r + 8), B is the key codes: lane (r, c) looks up
//     the pairs of the warp's positions r and r + 8 (the two n tiles), its k order lane-major (chunk j of lane c is
//     dims 8 (D / 32 c + j) .. + 7: a plane's bytes one word, key_lane_indices transposing all chunks at once);
//   - the C fragments (head r, the warp's positions 2c, 2c + 1, 2c + 8, 2c + 9 of 16; warp_position places the 16 in
//     the tile) go through the online softmax (a max and a sum over the 4 lanes of a head: two shuffles) and, times
//     the records' V scalars and a power of two per tile (kPScale), become the P x V A operand as they stand: hi parts
//     in rows 0-7, lo parts in rows 8-15;
//   - values O (16 rows x 8 dims) += P V: B is the value codes (k = the 16 positions, n = 8 dims): lane r reads the
//     8-code half word r + 8 i of each of its 4 positions (tq_pair_index.h's warp_value_*), whose nibble k is the dim
//     of n tile 8 i + k: one table lookup per pair of positions and n tile, in the lane's own copy of the value
//     table (kValueCopies: ~2 bank wavefronts a lookup instead of ~3.4). O lives in 4 D / 8 registers a lane.
// Each warp keeps its own running max, sum and O; the block merges its 4 warps once, at the end. One barrier per
// tile (the double-buffered copies); the query's rotation takes none (tq_mma_common.cuh's rotate_query). The f32
// operands go in as f16 hi + lo as in tq_decode_mma.cu, so results are the CUDA-core kernel's to f32 rounding.
// Measured (H100, attention alone on the 8B shape, us at 40K / 100K positions): seventeenth session 60.1 / 123 against
// the dims kernel's 63.5 / 136 (before warp_position and rotate_query); eighteenth session 53.9 / 114 before the
// lane-major keys and the value-table copies, 51.8 / 108 with the keys alone, 50.0 / 104 with both (instructions
// -15%), 47.0 / 99.8 with the merge by warps (turboquant.cu); twenty-sixth session 43.8 / 89.2 with BulkTiles
// (tq_records.cuh); twenty-seventh 41.8 / 84.2 against 43.6 / 88.6 with the lookups' address math, lazy rescaling,
// constant table offsets and 32-bit tile counters (docs/cuda.md).
#include "cuda/kernels/tq_decode_warps.cuh"

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

constexpr int kWarps = kDThreads / 32;
// Lazy rescaling: a row's running max moves only when a tile's max exceeds it by more than ln 4, so most tiles leave
// O's scale alone (the rescale was 64 FMULs a lane in ~60% of tiles: eighteenth session's SASS) and P stays <= 4;
// the P x V scalars then go in times kWarpsPScale = kPScale / 4, so their largest is still at most kPScale.
constexpr float kLazyMax = 1.38629436f;  // ln 4
constexpr float kWarpsPScale = kPScale / 4.0f;

struct WarpsLayout {
  SetupLayout s;
  int qs, ml, offs, bars, blks, tiles, k_area, v_area, total;
};

// Shared memory for the tiles by bulk copies (kBulkStages buffers, BulkTiles' barriers and block pointers) or by
// cp.async (2 buffers).
WarpsLayout warps_layout(const TqKvBlocks& kv, int G, bool bulk) {
  const int D = static_cast<int>(kv.head_dim), stages = bulk ? kBulkStages : 2;
  WarpsLayout l;
  l.s = setup_layout(kv, G, kValueCopies);
  l.ml = l.s.qs;                                         // per warp and head: max, sum
  l.offs = l.ml + kWarps * 8 * 2 * 4;                    // [stages][K, V][kDT]
  l.bars = (l.offs + stages * 2 * kDT * 2 + 7) / 8 * 8;  // BulkTiles' full and empty mbarriers
  l.blks = l.bars + (bulk ? 2 * kBulkStages * 8 : 0);     // BulkTiles' next_blks
  l.tiles = l.blks + (bulk ? kDThreads / 32 * kPrefetchedSegments * 8 : 0);
  l.k_area = staged_records_bytes(kv.k.record_bytes, kv.block_tokens);
  l.v_area = staged_records_bytes(kv.v.record_bytes, kv.block_tokens);
  // The tiles, then the warps' output slices in their place; the rotated query (set-up) and the block's output (no
  // splits) in the last stage's buffer past the slices: no tile is copied there before the set-up's barrier (tile
  // stages - 1 is issued in the loop) and none after the loop. Its own place would cost the 8B shape's third buffer
  // its fourth block an SM (57,344 bytes a block on the H100).
  const int buffers = stages * (l.k_area + l.v_area), slices = kWarps * 8 * (D + 4) * 4;
  l.qs = l.tiles + (std::max((stages - 1) * (l.k_area + l.v_area), slices) + 15) / 16 * 16;
  l.total = std::max(l.tiles + std::max(buffers, slices), l.qs + G * D * 4);
  return l;
}

// Scores of the lane's head r at its positions qp[0..3] of the tile (C columns 2c, 2c + 1 of the two n tiles), before
// the softmax scale; its key lookups are at positions kp[0..1] (B column r of the n tiles). The keys are one group
// of D dims (decode_warps_supports): constant plane offsets, every chunk's indices from the planes' words at once
// (key_lane_indices: lane c's chunk j is dims 8 (NC c + j) .. + 7, block_setup's kQueryA order).
template <int KB, int D>
__device__ __forceinline__ void score_columns(const TqKvBlocks& kv, const uint8_t* tk, const uint16_t* ko,
                                              const uint32_t* lut_k, const uint4* qf, const int (&kp)[2],
                                              const int (&qp)[4], int lane, float (&s)[4]) {
  constexpr int NC = D / kChunk;
  const int c = lane & 3;
  // Rows past the tile read its last record (issue_tile's padded offsets); their scores are never used.
  const uint8_t* rec = tk + ko[kp[0]];
  const uint8_t* rec8 = tk + ko[kp[1]];
  float c0[4] = {0.0f, 0.0f, 0.0f, 0.0f}, c1[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  uint32_t i0[NC][4], i8[NC][4];
  key_lane_indices<KB, NC>(rec, c, D / 8, i0);
  key_lane_indices<KB, NC>(rec8, c, D / 8, i8);
#pragma unroll
  for (int j = 0; j < NC; ++j) {
    uint32_t e[4], e8[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) e[i] = lut_k[i0[j][i]], e8[i] = lut_k[i8[j][i]];
    const uint4* q = qf + 64 * j + lane;
    const uint4 q0 = q[0], q1 = q[32];
    // A: head r's hi pair in row r, its lo pair in row r + 8; k step 0 takes pairs 0, 1, k step 1 pairs 2, 3
    // (block_setup's kQueryA order).
    const uint32_t a0[4] = {q0.x, q0.y, q0.z, q0.w}, a1[4] = {q1.x, q1.y, q1.z, q1.w};
    mma_16816(c0, a0, e[0], e[1]), mma_16816(c0, a1, e[2], e[3]);
    mma_16816(c1, a0, e8[0], e8[1]), mma_16816(c1, a1, e8[2], e8[3]);
  }
  // The key scalars of the C columns' positions.
  const float f[4] = {load_half(tk + ko[qp[0]] + kv.k.scalar_offset), load_half(tk + ko[qp[1]] + kv.k.scalar_offset),
                      load_half(tk + ko[qp[2]] + kv.k.scalar_offset), load_half(tk + ko[qp[3]] + kv.k.scalar_offset)};
  s[0] = f[0] * (c0[0] + c0[2]) * kScoreUnscale, s[1] = f[1] * (c0[1] + c0[3]) * kScoreUnscale;
  s[2] = f[2] * (c1[0] + c1[2]) * kScoreUnscale, s[3] = f[3] * (c1[1] + c1[3]) * kScoreUnscale;
}

// The tile position of MMA index m (0-15: the B columns of the scores, the k of P x V) of warp w: 16 (m / 2 % 4) +
// 4 (2 (m / 8) + m % 2) + w. The 4 lanes of a row take positions 16 apart, which puts the 4-bit value records of
// K5 / V4 (66 bytes: 16 records are 264 words, 8 banks) of a load's 32 lanes in 32 different banks (16 consecutive
// positions a warp put them 4-way on 8 banks: ncu, seventeenth session).
__device__ __forceinline__ int warp_position(int m, int w) {
  return 16 * ((m >> 1) & 3) + 4 * (2 * (m >> 3) + (m & 1)) + w;
}

// The value-table entry of the pair index in byte `byte` of x, from the lane's copy (lane_copy: its byte offset in an
// entry's 4 kValueCopies = 64 bytes) of the table at lut_v: value_entry_offset's one shift and one mask, the copy
// or-ed in (one LOP3 for both) and the table's constant offset in the load's immediate, where extracting the byte,
// scaling it and adding the copy's base took five instructions (twenty-sixth session's SASS).
__device__ __forceinline__ uint32_t value_entry(const uint8_t* lut_v, uint32_t lane_copy, uint32_t x, int byte) {
  static_assert(4 * kValueCopies == 1 << 6, "entries 64 bytes apart");
  return *reinterpret_cast<const uint32_t*>(lut_v + (value_entry_offset<6>(x, byte) | lane_copy));
}

// 4 bytes at a 2-byte aligned shared address (records are 2-byte aligned).
__device__ __forceinline__ uint32_t load_u32_2(const uint8_t* p) {
  const uint16_t* h = reinterpret_cast<const uint16_t*>(p);
  return static_cast<uint32_t>(h[0]) | static_cast<uint32_t>(h[1]) << 16;
}

// Block = (KV head, split, query), 4 warps; NT = head_dim / 8 n tiles of the output. Keys and values are one group
// of the head (decode_warps_supports), so the group dim is D, a constant.
// TB: the tiles by bulk copies (issue_tile_bulk; DecodeOptions::tq_bulk_copies), else cp.async.
// PC: P x V by columns (G <= 4; DecodeOptions::tq_pv_columns): O^T (16 dims x 8 parts) += V^T (16 dims x 16 positions)
// P^T (16 positions x 8 parts), the parts heads 0-3's hi then their lo rows of P. Rows r and r + 8 of m tile 4 i + m
// are nibbles 2 m and 2 m + 1 of the lane's half word r + 8 i (the even and odd value pairs' byte m: the same lookups
// as the n tiles'), so D / 16 MMAs and 2 D / 8 accumulators a lane where the n tiles (heads in rows 0-7, their lo
// parts in 8-15, half of them empty at G <= 4) take D / 8 and 4 D / 8. P goes in as B: lane (r, c) holds part r's P
// at its 4 positions, rows 0-3's own hi or, in rows 4-7, the lo of the lane 16 below. Column 2 c + e of the
// accumulators is head (2 c + e) % 4's hi (c < 2) or lo part: its rescales come from that head's lanes, and the parts
// are summed across lanes c and c ^ 2 once at the end.
template <int KB, int NT, bool TB, bool PC>
__global__ void __launch_bounds__(kDThreads, 4) tq_decode_warps_kernel(TqAttnParams a, WarpsLayout L) {
  constexpr int D = 8 * NT, NW = NT / 8;  // NW: half words a lane reads per position
  constexpr int NA = PC ? NT / 2 : NT;    // accumulator tiles: D / 16 m tiles of dims (PC), else D / 8 n tiles
  extern __shared__ __align__(16) uint8_t smem[];
  const TqKvBlocks& kv = a.kv;
  const int64_t kh = blockIdx.x, split = blockIdx.y, t = blockIdx.z;
  const int splits = gridDim.y, lane = threadIdx.x & 31, warp = threadIdx.x >> 5, r = lane >> 2, c = lane & 3;
  const int G = a.group;
  // The tables and query fragments at setup_layout's offsets as constants, so a lookup's address is its index alone
  // (the table's offset goes in the load's immediate): an IADD a lookup fewer.
  constexpr int kLutV = value_table_offset(KB), kQf = query_fragments_offset(KB, kValueCopies);
  uint32_t* lut_k = reinterpret_cast<uint32_t*>(smem);
  uint32_t* lut_v = reinterpret_cast<uint32_t*>(smem + kLutV);
  uint4* qf = reinterpret_cast<uint4*>(smem + kQf);
  float* qs = reinterpret_cast<float*>(smem + L.qs);
  float* ml_w = reinterpret_cast<float*>(smem + L.ml);          // [warp][head][max, sum]
  uint16_t* offs = reinterpret_cast<uint16_t*>(smem + L.offs);  // [stages][K, V][kDT]
  uint8_t* tiles = smem + L.tiles;
  const int buf_bytes = L.k_area + L.v_area;
  uint64_t* bars = reinterpret_cast<uint64_t*>(smem + L.bars);
  const BulkTiles bulk{tiles, offs, bars, bars + kBulkStages, reinterpret_cast<const uint8_t**>(smem + L.blks),
                       L.k_area, buf_bytes};

  EncodeGate gate = enter_decode(a);
  const SplitRange range = split_range(a, t, split, splits);
  if constexpr (TB) bulk.begin(kv, kh, range, gate);
  else first_tile(kv, kh, range, tiles, offs, L.k_area, gate);  // tile 0's copies overlap the set-up
  block_setup<KB, true, kValueCopies>(a, t, kh, lut_k, lut_v, qs, qf);
  if constexpr (TB) __syncthreads();  // qf is in (the cp.async loop's first barrier does this there)
  const uint32_t lane_copy = 4 * (lane & (kValueCopies - 1));  // the lane's copy of the value table

  // The lane's half words' offsets in a V record, and its positions in a tile (warp_positions).
  int word_at[NW];
#pragma unroll
  for (int i = 0; i < NW; ++i) word_at[i] = warp_value_word_offset(r + 8 * i, D, kv.v.group_bytes);
  const int kp[2] = {warp_position(r, warp), warp_position(r + 8, warp)};
  const int qp[4] = {warp_position(2 * c, warp), warp_position(2 * c + 1, warp), warp_position(2 * c + 8, warp),
                     warp_position(2 * c + 9, warp)};

  float acc[NA][4];
#pragma unroll
  for (int j = 0; j < NA; ++j)
#pragma unroll
    for (int i = 0; i < 4; ++i) acc[j][i] = 0.0f;
  // Head r's running max (lazy: kLazyMax) and the lane's part of its sum; acc holds O x 2^-e_run x kWarpsPScale x
  // kValueScale, e_run from kMinExponent (p_scale stays finite while no V scalar is non-zero).
  constexpr int kMinExponent = -30;
  float m_run = -INFINITY, l_run = 0.0f;
  int e_run = kMinExponent;

  for (int it = 0; it < range.n_tiles; ++it) {
    int buf, n;
    if constexpr (TB) {
      n = bulk.next(kv, kh, range, it, gate), buf = bulk.stage_of(it);
    } else {
      buf = static_cast<int>(it & 1);
      async_wait<0>();
      __syncthreads();  // tile it is in; every warp is done with tile it - 1 (its buffer)
      n = next_tile(kv, kh, range, it, tiles, offs, L.k_area, buf_bytes, gate);
    }
    if (warp >= n) {  // warp-uniform: none of its positions is in the tile
      if constexpr (TB) bulk.release(it);
      continue;
    }
    const uint8_t* tk = tiles + buf * buf_bytes;
    const uint8_t* tv = tk + L.k_area;
    const uint16_t* ko = offs + buf * 2 * kDT;
    const uint16_t* vo = ko + kDT;

    float s[4];
    score_columns<KB, D>(kv, tk, ko, lut_k, qf, kp, qp, lane, s);

    // Online softmax of head r over the warp's 16 positions: the lane's 4, then its row's 4 lanes. Positions past n
    // score -inf (their records are the tile's padding), so their probabilities are expf(-inf) = 0; the warp has at
    // least one position in the tile, so m_new is finite.
#pragma unroll
    for (int i = 0; i < 4; ++i) s[i] *= a.scale;
    if (a.softcap > 0.0f) {  // uniform
#pragma unroll
      for (int i = 0; i < 4; ++i) s[i] = a.softcap * tanhf(s[i] / a.softcap);
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) s[i] = qp[i] < n ? s[i] : -INFINITY;
    float tmax = fmaxf(fmaxf(s[0], s[1]), fmaxf(s[2], s[3]));
    tmax = fmaxf(tmax, __shfl_xor_sync(0xFFFFFFFFu, tmax, 1));
    tmax = fmaxf(tmax, __shfl_xor_sync(0xFFFFFFFFu, tmax, 2));
    const float m_new = tmax > m_run + kLazyMax ? tmax : m_run;  // -inf on the warp's first tile: tmax
    // exp as exp2 of x log2 e - m log2 e (one FFMA and the ex2 unit's instruction; expf is ~8), as in the prefill
    // kernel.
    const float corr = exp2f((m_run - m_new) * prefill::kLog2e);  // 0 on the warp's first tile
    const bool first = m_run == -INFINITY;                         // O is still zero: no rescale
    const float m_l2 = m_new * prefill::kLog2e;
    float p[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) p[i] = exp2f(fmaf(s[i], prefill::kLog2e, -m_l2));
    l_run = fmaf(l_run, corr, (p[0] + p[1]) + (p[2] + p[3]));
    m_run = m_new;

    // The positions' V scalars (0 past n) and the warp's largest. The tile's P x V scalars go in times 2^(12 - e_run),
    // e_run the largest exponent the warp has met (with P <= 4: at most kPScale), which changes only when a larger
    // scalar comes: most tiles then leave O's scale alone and skip its rescaling. A tile of scalars far below the
    // warp's largest keeps its hi + lo split to ~2^-23 absolute in these units (relative ~1e-5 only for scalars ~2^14
    // apart).
    const uint8_t* vr[4] = {tv + vo[qp[0]], tv + vo[qp[1]], tv + vo[qp[2]], tv + vo[qp[3]]};
    float vs[4], vmax = 0.0f;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float v = load_half(vr[i] + kv.v.scalar_offset);
      vs[i] = qp[i] < n ? v : 0.0f;
      vmax = fmaxf(vmax, fabsf(vs[i]));
    }
    vmax = fmaxf(vmax, __shfl_xor_sync(0xFFFFFFFFu, vmax, 1));
    vmax = fmaxf(vmax, __shfl_xor_sync(0xFFFFFFFFu, vmax, 2));
    const int e_new = vmax > 0.0f ? max(e_run, pv_exponent(vmax)) : e_run;
    // Powers of two by their exponent bits (ldexpf is a call): -e_new in [-17, 30], e_run - e_new in [-47, 0].
    const float p_scale = kWarpsPScale * prefill::pow2(-e_new), rescale = corr * prefill::pow2(e_run - e_new);
    e_run = e_new;
    if (__any_sync(0xFFFFFFFFu, rescale != 1.0f && !first)) {
      if constexpr (PC) {  // columns 2 c, 2 c + 1: heads 2 c % 4 and (2 c + 1) % 4 (rows 2 c % 4 and the next)
        const float f0 = __shfl_sync(0xFFFFFFFFu, rescale, (8 * c) & 15);
        const float f1 = __shfl_sync(0xFFFFFFFFu, rescale, (8 * c + 4) & 15);
#pragma unroll
        for (int j = 0; j < NA; ++j) acc[j][0] *= f0, acc[j][1] *= f1, acc[j][2] *= f0, acc[j][3] *= f1;
      } else {
#pragma unroll
        for (int j = 0; j < NT; ++j)
#pragma unroll
          for (int i = 0; i < 4; ++i) acc[j][i] *= rescale;
      }
    }

    // O += P V: A = P x V scalar x p_scale (hi rows r, lo rows r + 8).
    uint32_t pa[4];
    split2(p[0] * vs[0] * p_scale, p[1] * vs[1] * p_scale, pa[0], pa[1]);
    split2(p[2] * vs[2] * p_scale, p[3] * vs[3] * p_scale, pa[2], pa[3]);
    uint32_t pb0 = 0, pb1 = 0;  // PC: B = P^T, part r's P at the lane's positions
    if constexpr (PC) {
      const uint32_t lo01 = __shfl_xor_sync(0xFFFFFFFFu, pa[1], 16), lo89 = __shfl_xor_sync(0xFFFFFFFFu, pa[3], 16);
      pb0 = lane < 16 ? pa[0] : lo01, pb1 = lane < 16 ? pa[2] : lo89;
    }
#pragma unroll
    for (int i = 0; i < NW; ++i) {
      const uint32_t w0 = load_u32_2(vr[0] + word_at[i]), w1 = load_u32_2(vr[1] + word_at[i]);
      const uint32_t w8 = load_u32_2(vr[2] + word_at[i]), w9 = load_u32_2(vr[3] + word_at[i]);
      const uint32_t x01[2] = {value_pairs_even(w0, w1), value_pairs_odd(w0, w1)};
      const uint32_t x89[2] = {value_pairs_even(w8, w9), value_pairs_odd(w8, w9)};
      if constexpr (PC) {
#pragma unroll
        for (int m = 0; m < 4; ++m) {
          const uint32_t va[4] = {value_entry(smem + kLutV, lane_copy, x01[0], m),
                                  value_entry(smem + kLutV, lane_copy, x01[1], m),
                                  value_entry(smem + kLutV, lane_copy, x89[0], m),
                                  value_entry(smem + kLutV, lane_copy, x89[1], m)};
          mma_16816(acc[4 * i + m], va, pb0, pb1);
        }
      } else {
#pragma unroll
        for (int k = 0; k < 8; ++k) {
          const uint32_t b0 = value_entry(smem + kLutV, lane_copy, x01[k & 1], k >> 1),
                         b1 = value_entry(smem + kLutV, lane_copy, x89[k & 1], k >> 1);
          mma_16816(acc[8 * i + k], pa, b0, b1);
        }
      }
    }
    if constexpr (TB) bulk.release(it);
  }
  gate.finish();

  // The block's 4 warps merged: head r's max over the warps, each warp's O rescaled to it.
  l_run += __shfl_xor_sync(0xFFFFFFFFu, l_run, 1);
  l_run += __shfl_xor_sync(0xFFFFFFFFu, l_run, 2);
  if (c == 0) ml_w[(warp * 8 + r) * 2] = m_run, ml_w[(warp * 8 + r) * 2 + 1] = l_run;
  __syncthreads();  // ml_w is in; every warp is past its last tile (its buffers take the slices below)
  float m_all = -INFINITY, l_all = 0.0f;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) m_all = fmaxf(m_all, ml_w[(w * 8 + r) * 2]);
#pragma unroll
  for (int w = 0; w < kWarps; ++w) {
    const float mw = ml_w[(w * 8 + r) * 2];
    if (mw != -INFINITY) l_all = fmaf(ml_w[(w * 8 + r) * 2 + 1], expf(mw - m_all), l_all);
  }
  const float unscale = ldexpf(1.0f / (kWarpsPScale * kValueScale), e_run);
  const float fw = m_run == -INFINITY ? 0.0f : expf(m_run - m_all) * unscale;
  const float norm = splits > 1 ? 1.0f : (l_all > 0.0f ? 1.0f / l_all : 0.0f);
  // Each warp's O (rotated domain, scaled to the block's max) into its slice of the tile buffers, then summed over
  // the warps in a fixed order (the output does not depend on timing).
  float* slices = reinterpret_cast<float*>(tiles);  // [warp][8 heads][kSliceStride]
  constexpr int kSliceStride = D + 4;               // a lane's rows r apart by 4 banks
  if constexpr (PC) {
    // Each head's hi and lo columns summed (lanes c and c ^ 2), then lanes c < 2 write heads 2 c and 2 c + 1 at the
    // dims of their rows.
    const float s0 = __shfl_sync(0xFFFFFFFFu, fw * norm, (8 * c) & 15);
    const float s1 = __shfl_sync(0xFFFFFFFFu, fw * norm, (8 * c + 4) & 15);
#pragma unroll
    for (int j = 0; j < NA; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[j][e] += __shfl_xor_sync(0xFFFFFFFFu, acc[j][e], 2);
    if (c < 2) {
      float* sl0 = slices + (warp * 8 + 2 * c) * kSliceStride;
      float* sl1 = sl0 + kSliceStride;
      const bool has0 = 2 * c < G, has1 = 2 * c + 1 < G;
#pragma unroll
      for (int j = 0; j < NA; ++j) {
        const int i = j >> 2, m = j & 3;
        const int dx = warp_value_dim(r + 8 * i, 2 * m, D), dy = warp_value_dim(r + 8 * i, 2 * m + 1, D);
        if (has0) sl0[dx] = acc[j][0] * s0, sl0[dy] = acc[j][2] * s0;
        if (has1) sl1[dx] = acc[j][1] * s1, sl1[dy] = acc[j][3] * s1;
      }
    }
  } else if (r < G) {
    float* sl = slices + (warp * 8 + r) * kSliceStride;
#pragma unroll
    for (int j = 0; j < NT; ++j) {
      const int i = j >> 3, k = j & 7;
      sl[warp_value_dim(2 * c + 8 * i, k, D)] = (acc[j][0] + acc[j][2]) * fw * norm;
      sl[warp_value_dim(2 * c + 1 + 8 * i, k, D)] = (acc[j][1] + acc[j][3]) * fw * norm;
    }
  }
  __syncthreads();
  float* ob = qs;  // [G][D], when there are no splits
  for (int e = threadIdx.x; e < G * D; e += kDThreads) {
    const int h = e / D, d = e - h * D;
    float o = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) o += slices[(w * 8 + h) * kSliceStride + d];
    if (splits > 1) a.part_o[((t * a.n_heads + kh * G + h) * splits + split) * D + d] = o;
    else ob[e] = o;
  }
  if (splits > 1) {
    if (warp == 0 && c == 0 && r < G) {
      const int64_t slot = (t * a.n_heads + kh * G + r) * splits + split;
      a.part_ml[slot * 2] = m_all, a.part_ml[slot * 2 + 1] = l_all;
    }
    return;  // uniform over the block
  }
  __syncthreads();
  if (kv.rot_d1) block_rotate(ob, G, D, kv.k.group_dim, kv.rot_d2, kv.rot_d1, kv.rot_inv_sqrt);  // Pi^T
  for (int e = threadIdx.x; e < G * D; e += kDThreads) a.out[(t * a.n_heads + kh * G) * D + e] = ob[e];
}

// One instance of the kernel (its key bits, NT, copy mode, P x V by columns) and its shared-memory opt-in.
template <int KB, int NT, bool TB, bool PC>
struct Instance {
  static constexpr auto kernel = tq_decode_warps_kernel<KB, NT, TB, PC>;
  static SharedMemoryGrant& grant() {
    static SharedMemoryGrant g;
    return g;
  }
};

// f(Instance<...>{}) for the records' key bits, head_dim and the chosen modes (P x V by columns with bulk copies
// only).
template <int NT, bool TB, bool PC, class F>
void with_bits(int bits, F&& f) {
  switch (bits) {
    case 2: f(Instance<2, NT, TB, PC>{}); break;
    case 3: f(Instance<3, NT, TB, PC>{}); break;
    case 4: f(Instance<4, NT, TB, PC>{}); break;
    default: f(Instance<5, NT, TB, PC>{}); break;
  }
}
template <int NT, class F>
void with_modes(int bits, bool bulk, bool columns, F&& f) {
  if (!bulk) with_bits<NT, false, false>(bits, f);
  else if (columns) with_bits<NT, true, true>(bits, f);
  else with_bits<NT, true, false>(bits, f);
}
template <class F>
void with_instance(const TqKvBlocks& kv, bool bulk, bool columns, F&& f) {
  if (kv.head_dim == 64) with_modes<8>(kv.k.bits, bulk, columns, f);
  else with_modes<16>(kv.k.bits, bulk, columns, f);
}

}  // namespace

bool decode_warps_supports(const TqKvBlocks& kv) {
  const int D = static_cast<int>(kv.head_dim);
  // One group a head for keys and values (check_codec makes them equal; turbo_group_dim gives head_dim 64 / 128
  // groups of their size). The value math takes groups of 64 or more dims (warp_value_*), but only these shapes
  // are launched and tested.
  return (D == 64 || D == 128) && kv.v.group_dim == D && kv.k.group_dim == D;
}

void decode_warps(const TqAttnParams& a, int splits, int64_t n_q, cudaStream_t stream) {
  const DecodeOptions opts = decode_options();  // read once: the layout and the instance must agree
  const bool bulk = opts.tq_bulk_copies, columns = opts.tq_pv_columns && a.group <= 4;
  const WarpsLayout l = warps_layout(a.kv, a.group, bulk);
  if (l.total > static_cast<int>(kMaxSharedBytes))
    throw Error(ErrorKind::internal, "cuda TurboQuant attention", "warp decode layout exceeds shared memory");
  const dim3 grid(static_cast<unsigned>(a.kv.n_kv_heads), static_cast<unsigned>(splits), static_cast<unsigned>(n_q));
  with_instance(a.kv, bulk, columns, [&](auto instance) {
    using I = decltype(instance);
    if (l.total > 48 * 1024)
      opt_in_shared_memory(I::kernel, static_cast<unsigned>(l.total), I::grant(), "TurboQuant warp decode shared memory");
    launch_chained("TurboQuant attention (tensor cores, warps own positions)", I::kernel, grid, kDThreads,
                   static_cast<size_t>(l.total), stream, a, l);
  });
}

}  // namespace lmlab::kernels::cuda::tq
