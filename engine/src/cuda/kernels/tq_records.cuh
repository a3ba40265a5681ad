// TurboQuant / affine records in shared memory, shared by the decode kernels (turboquant.cu's CUDA-core
// flash-decoding, tq_decode_mma.cu's tensor-core one) and the prefill source: the attention parameters, the staging
// of a tile's K and V records by cp.async, the f16 scalars, and the rotation Pi (queries in, outputs back).
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

#include "cuda/kernels/async_copy.cuh"
#include "cuda/kernels/chained_launch.cuh"
#include "cuda/kernels/kernels_cuda.h"
#include "cuda/kernels/reduce.cuh"
#include "cuda/kernels/tq_splits.h"
#include "cuda/kernels/tq_staging.h"

namespace lmlab::kernels::cuda::tq {

__device__ __forceinline__ float h2f(uint16_t v) { return __half2float(__ushort_as_half(v)); }
// f16 at a 2-byte aligned address.
__device__ __forceinline__ float load_half(const uint8_t* p) { return h2f(*reinterpret_cast<const uint16_t*>(p)); }

// In-place unnormalised Walsh-Hadamard transform of n_vec vectors of g floats (x [n_vec g], shared memory),
// wht.cpp's butterflies stage by stage; every thread of the block calls it. g is a power of two (check_codec): the
// indices take shifts and masks (the divisions by h and g / 2 they replaced made a 16-row rotation ~10 us).
__device__ inline void block_fwht(float* x, int n_vec, int g) {
  const int log_g = __ffs(g) - 1, half = g / 2;
  for (int log_h = 0; log_h < log_g; ++log_h) {
    const int h = 1 << log_h;
    for (int b = threadIdx.x; b < n_vec * half; b += blockDim.x) {
      const int vec = b >> (log_g - 1), k = b & (half - 1);
      const int j = (vec << log_g) + ((k >> log_h) << (log_h + 1)) + (k & (h - 1));
      const float p = x[j], q = x[j + h];
      x[j] = __fadd_rn(p, q);
      x[j + h] = __fsub_rn(p, q);
    }
    __syncthreads();
  }
}

// block_fwht's butterflies on registers: a lane holds `per` consecutive dims (x[0 .. per), per <= kMax, a power of
// two) of a g-dim group vector spread over g / per consecutive lanes; the stages inside the lane, then across lanes
// by shuffles, each butterfly the same float operations in the same stage order (so the results are bit-equal).
template <int kMax>
__device__ __forceinline__ void warp_fwht(float (&x)[kMax], int per, int g, int lane) {
#pragma unroll
  for (int h = 1; h < kMax; h <<= 1)
#pragma unroll
    for (int i = 0; i < kMax; ++i)
      if (h < per && !(i & h) && i + h < per) {
        const float a = x[i], b = x[i + h];
        x[i] = __fadd_rn(a, b), x[i + h] = __fsub_rn(a, b);
      }
  for (int h = per; h < g; h <<= 1) {
    const int m = h / per;  // the partner lane's distance
    const bool upper = lane & m;
#pragma unroll
    for (int i = 0; i < kMax; ++i)
      if (i < per) {
        const float o = __shfl_xor_sync(0xFFFFFFFFu, x[i], m);
        x[i] = upper ? __fsub_rn(o, x[i]) : __fadd_rn(x[i], o);
      }
  }
}

// x [n_vec][D] (shared) <- Pi x (forward) or Pi^T x (inverse), per group of g dims; RandomizedHadamard's order.
// Element e's column e % D is stepped along with e (no division per element).
__device__ inline void block_rotate(float* x, int n_vec, int D, int g, const float* s_in, const float* s_out,
                                    float inv_sqrt) {
  const int d0 = static_cast<int>(threadIdx.x) % D, step = static_cast<int>(blockDim.x) % D;
  for (int e = threadIdx.x, d = d0; e < n_vec * D; e += blockDim.x, d = d + step < D ? d + step : d + step - D)
    x[e] = __fmul_rn(x[e], s_in[d]);
  __syncthreads();
  block_fwht(x, n_vec * (D / g), g);
  for (int e = threadIdx.x, d = d0; e < n_vec * D; e += blockDim.x, d = d + step < D ? d + step : d + step - D)
    x[e] = __fmul_rn(x[e], __fmul_rn(s_out[d], inv_sqrt));
  __syncthreads();
}

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
  bool after_encode;  // the chained kernel just before is tq_kv_write of positions[0] on (EncodeGate)
  // The last late_splits splits start after the encode and hold late_shortfall positions fewer (tq_splits.h).
  int late_splits, late_shortfall;
};

inline constexpr int kDT = kTqTile;  // positions per tile
inline constexpr int kDThreads = 128;

// One segment (cnt consecutive records of `rec` bytes at src, inside one KV block) into buf at `at` (segment_at) by
// one warp: the 16-byte aligned chunks covering it, so record t of the segment lands at off[t] = at + (src % 16) +
// t rec. The pad offsets after them repeat the last record's (the tile's last segment pads the tile to kDT
// positions, so the kernels read any row of a partial tile without a clamp; its weight there is zero).
// The 16-byte aligned chunks covering cnt records of rec bytes at src: their start, the first record's offset in
// them, their bytes.
struct AlignedSegment {
  uintptr_t start;
  int head, bytes;
};
__device__ __forceinline__ AlignedSegment aligned_segment(const uint8_t* src, int cnt, int rec) {
  const uintptr_t s = reinterpret_cast<uintptr_t>(src), as = s & ~uintptr_t{15};
  const int head = static_cast<int>(s - as);
  return {as, head, (head + cnt * rec + 15) / 16 * 16};
}
__device__ __forceinline__ void stage_segment(uint8_t* buf, int at, const uint8_t* src, int cnt, int pad, int rec,
                                              uint16_t* off, int lane) {
  const AlignedSegment a = aligned_segment(src, cnt, rec);
  for (int i = lane; i < a.bytes / 16; i += 32)
    copy16_async(buf + at + 16 * i, reinterpret_cast<const void*>(a.start + 16 * static_cast<uintptr_t>(i)));
  for (int i = lane; i < cnt + pad; i += 32) off[i] = static_cast<uint16_t>(at + a.head + min(i, cnt - 1) * rec);
}

// The K (v false) or V record of (KV head kh, position `slot` of the block) in KV block blk.
__device__ __forceinline__ const uint8_t* record_at(const TqKvBlocks& kv, const uint8_t* blk, int64_t kh, int64_t slot,
                                                    bool v) {
  const int64_t B = kv.block_tokens, at = kh * B + slot;
  return v ? blk + kv.n_kv_heads * B * kv.k.record_bytes + at * kv.v.record_bytes : blk + at * kv.k.record_bytes;
}

inline constexpr uint16_t kNoRecord = 0xFFFF;  // a staged record's offset for a position in a released block

// Issues the copies of the n positions from p0 (K and V records of KV head kh) into one buffer, a warp per segment
// (every thread of the block calls it); the offsets of positions n .. kDT - 1 repeat position n - 1's. Each thread
// used to walk every segment's address math (~300 instructions a segment, three segments for most tiles: ~40% of the
// tensor-core decode's instructions). kReleased (prefill tiles): positions in released blocks get the offset
// kNoRecord; the decode kernel's splits never reach one (and the check cost it registers).
template <bool kReleased = false>
__device__ __forceinline__ void issue_tile(const TqKvBlocks& kv, int64_t kh, int64_t p0, int n, uint8_t* kbuf,
                                           uint8_t* vbuf, uint16_t* koff, uint16_t* voff) {
  const uint32_t B = static_cast<uint32_t>(kv.block_tokens);  // 32-bit division: the 64-bit one is a long call
  const uint32_t b0 = div_block(static_cast<uint32_t>(p0), B), slot0 = static_cast<uint32_t>(p0) - b0 * B;
  const int nseg = tile_segments(slot0, n, B);
  const int k_rec = kv.k.record_bytes, v_rec = kv.v.record_bytes, lane = threadIdx.x & 31;
  for (int s = threadIdx.x >> 5; s < nseg; s += kDThreads / 32) {  // warp-uniform; callers launch kDThreads
    int t0, cnt;
    tile_segment(slot0, n, B, s, t0, cnt);
    const uint8_t* blk = kv.blocks[b0 + static_cast<uint32_t>(s)];
    const int pad = s == nseg - 1 ? kTqTile - n : 0;
    if (kReleased && !blk) {
      for (int i = lane; i < cnt + pad; i += 32) koff[t0 + i] = voff[t0 + i] = kNoRecord;
      continue;
    }
    const int64_t slot = s == 0 ? slot0 : 0;
    stage_segment(kbuf, segment_at(t0, k_rec, s), record_at(kv, blk, kh, slot, false), cnt, pad, k_rec, koff + t0,
                  lane);
    stage_segment(vbuf, segment_at(t0, v_rec, s), record_at(kv, blk, kh, slot, true), cnt, pad, v_rec, voff + t0,
                  lane);
  }
}

// issue_tile's copies as bulk async copies by one warp (every lane calls it): lane s takes segment s of the K and V
// records (its 16-byte aligned chunks, one copy each); the offsets as issue_tile's, stored before lane 0 arms `bar`
// with the copies' bytes (an arrival releases them), so a warp that has seen `bar` complete reads them. The LDGSTS
// of issue_tile cost ~11 instructions and ~4 shared-memory wavefronts a lane and segment (eighteenth session's SASS:
// the copies' issue ~13% of the warps decode's instructions, their stores ~14% of its shared wavefronts). Tiles touch
// at most 64 / B + 2 KV blocks (B: block_tokens), one segment each.
// blk0: the KV block of segment `lane` (BulkTiles' prefetch), or null: loaded here.
__device__ __forceinline__ void issue_tile_bulk(const TqKvBlocks& kv, int64_t kh, int64_t p0, int n, uint8_t* kbuf,
                                                uint8_t* vbuf, uint16_t* koff, uint16_t* voff, uint64_t* bar,
                                                int lane, const uint8_t* blk0) {
  const uint32_t B = static_cast<uint32_t>(kv.block_tokens);
  const uint32_t b0 = div_block(static_cast<uint32_t>(p0), B), slot0 = static_cast<uint32_t>(p0) - b0 * B;
  const int nseg = tile_segments(slot0, n, B);
  const int k_rec = kv.k.record_bytes, v_rec = kv.v.record_bytes;
  struct Part {
    AlignedSegment seg;
    int at;  // its place in the buffer (segment_at)
  };
  // The lane's segments (s = lane, lane + 32: tiles of 64 positions touch at most 65 blocks of one position).
  Part parts[2][2] = {};
  unsigned bytes = 0;
#pragma unroll
  for (int k = 0; k < 2; ++k) {
    const int s = lane + 32 * k;
    if (s >= nseg) continue;
    int t0, cnt;
    tile_segment(slot0, n, B, s, t0, cnt);
    const uint8_t* blk = k || !blk0 ? kv.blocks[b0 + static_cast<uint32_t>(s)] : blk0;
    const int64_t slot = s == 0 ? slot0 : 0;
#pragma unroll
    for (int v = 0; v < 2; ++v) {
      const int rec = v ? v_rec : k_rec;
      parts[k][v] = {aligned_segment(record_at(kv, blk, kh, slot, v), cnt, rec), segment_at(t0, rec, s)};
      bytes += static_cast<unsigned>(parts[k][v].seg.bytes);
    }
  }
  // The offsets, segment by segment across the warp.
  for (int s = 0; s < nseg; ++s) {
    int t0, cnt;
    tile_segment(slot0, n, B, s, t0, cnt);
    const int pad = s == nseg - 1 ? kTqTile - n : 0;
    const int src_lane = s & 31, k = s >> 5;
    auto at = [&](int v) {  // segment s's first record in the buffer (k is warp-uniform: no indexed registers)
      return k ? parts[1][v].at + parts[1][v].seg.head : parts[0][v].at + parts[0][v].seg.head;
    };
    const int k_at = __shfl_sync(0xFFFFFFFFu, at(0), src_lane), v_at = __shfl_sync(0xFFFFFFFFu, at(1), src_lane);
    for (int i = lane; i < cnt + pad; i += 32) {
      const int r = min(i, cnt - 1);
      koff[t0 + i] = static_cast<uint16_t>(k_at + r * k_rec);
      voff[t0 + i] = static_cast<uint16_t>(v_at + r * v_rec);
    }
  }
  __syncwarp();  // the lanes' offsets before lane 0's arrival (a release)
  bytes = __reduce_add_sync(0xFFFFFFFFu, bytes);
  if (lane == 0) mbarrier_arrive_expect_tx(bar, bytes);
  __syncwarp();
#pragma unroll
  for (int k = 0; k < 2; ++k)
    if (lane + 32 * k < nseg) {
      bulk_copy_async(kbuf + parts[k][0].at, reinterpret_cast<const void*>(parts[k][0].seg.start),
                      static_cast<unsigned>(parts[k][0].seg.bytes), bar);
      bulk_copy_async(vbuf + parts[k][1].at, reinterpret_cast<const void*>(parts[k][1].seg.start),
                      static_cast<unsigned>(parts[k][1].seg.bytes), bar);
    }
}

// The positions [j0, j1) of split `split` of `splits` for query t (its window's history split evenly but for the
// late splits: tq_splits.h), in tiles of kDT.
struct SplitRange {
  int64_t j0, j1;
  int n_tiles;  // < 2^31 tiles of kDT positions: the loops' counters are 32-bit
  // Positions of tile i (< n_tiles), in 32 bits (a split holds < 2^31 positions).
  __device__ __forceinline__ int tile_count(int i) const { return min(kDT, static_cast<int>(j1 - j0) - i * kDT); }
};
__device__ __forceinline__ SplitRange split_range(const TqAttnParams& a, int64_t t, int64_t split, int splits) {
  const int64_t pos = a.positions[t];
  const int64_t lo = a.window > 0 ? max(int64_t{0}, pos - a.window + 1) : 0;
  const SplitSpan span = split_span(max(int64_t{0}, pos - lo + 1), splits, split, a.late_splits, a.late_shortfall);
  const int64_t j0 = lo + span.begin, j1 = lo + span.end;
  return {j0, j1, j1 > j0 ? static_cast<int>((j1 - j0 + kDT - 1) / kDT) : 0};
}

// The decode's early start (chained_launch.cuh). A decode's attention follows the encode of its new tokens, which
// follows the kernel that wrote the query (qk_norm_rope), and the encode lets this kernel start right after its own
// chain_wait(): by then every kernel before the encode has completed, so the query, the block table and the records
// of earlier steps may be read. Only the records from the new tokens' first position on wait for the encode, so a
// split that ends below it runs wholly beside the encode (~10 us a layer for one token). The block's last thread
// work past the tiles calls finish() (chained_launch.cuh's contract: every block waits before it exits).
struct EncodeGate {
  int64_t fresh;  // the first position the encode writes
  bool waited;
  __device__ __forceinline__ void before(int64_t end) {  // ahead of copying the positions below `end`
    if (!waited && end > fresh) chain_wait(), waited = true;
  }
  __device__ __forceinline__ void finish() {
    if (!waited) chain_wait(), waited = true;
  }
};
// A decode kernel's chained entry: without a preceding encode, the usual chain_enter().
__device__ __forceinline__ EncodeGate enter_decode(const TqAttnParams& a) {
  if (!a.after_encode) {
    chain_enter();
    return {0, true};
  }
  chain_release();
  return {a.positions[0], false};
}

// Issues and commits the copies of the split's first tile into buffer 0 (before the block's set-up, to overlap it).
__device__ __forceinline__ void first_tile(const TqKvBlocks& kv, int64_t kh, const SplitRange& s, uint8_t* tiles,
                                           uint16_t* offs, int k_area, EncodeGate& gate) {
  if (s.n_tiles > 0) {
    const int n = s.tile_count(0);
    gate.before(s.j0 + n);
    issue_tile(kv, kh, s.j0, n, tiles, tiles + k_area, offs, offs + kDT);
  }
  async_commit();
}

// Tile it's positions in the split, and the copies of tile it + 1 into the other buffer (if there is one) issued
// and committed. tiles: [2][k_area + v_area]; offs: [2][K, V][kDT].
__device__ __forceinline__ int next_tile(const TqKvBlocks& kv, int64_t kh, const SplitRange& s, int64_t it,
                                         uint8_t* tiles, uint16_t* offs, int k_area, int buf_bytes, EncodeGate& gate) {
  if (it + 1 < s.n_tiles) {
    const int64_t p1 = s.j0 + (it + 1) * kDT;
    const int nb = static_cast<int>((it + 1) & 1), n1 = s.tile_count(static_cast<int>(it + 1));
    uint8_t* t1 = tiles + nb * buf_bytes;
    uint16_t* o1 = offs + nb * 2 * kDT;
    gate.before(p1 + n1);
    issue_tile(kv, kh, p1, n1, t1, t1 + k_area, o1, o1 + kDT);
  }
  async_commit();
  return s.tile_count(static_cast<int>(it));
}

// The tiles by bulk copies (issue_tile_bulk) through kBulkStages buffers without a block barrier a tile: tile i lands
// in stage i % kBulkStages and completes full[stage] (one arrival: the issuing lane's expect_tx, then its bytes);
// each warp arrives on empty[stage] once done with it (kDThreads / 32 arrivals), and the warp that issues the stage's
// next tile waits for that first. Tile i is issued by warp i % 4 at the start of tile i - 1, so a warp waits only for
// its data or, issuing, for a warp two tiles behind. Each warp prefetches the KV block pointers of the next tile it
// issues into shared memory (cp.async), four tiles ahead.
// The per-tile __syncthreads this replaced held ~26% of the warps decode's stall samples (ncu at 100K: every tile
// waited for its issuing warp's block-table load); with 2 buffers the wait moved to the mbarriers (27.7% long
// scoreboard), with 3 it went (4%): attention alone at 100K 89.2 us against 96.4 (2) and 97.1 (cp.async), H100,
// twenty-sixth session (docs/cuda.md; the stage count a constant since: its runtime division cost ~25 instructions a
// warp and tile).
inline constexpr int kBulkStages = 3;
inline constexpr int kPrefetchedSegments = 8;  // a tile's KV blocks prefetched (64 / B + 2 for blocks of B >= 11)

struct BulkTiles {
  uint8_t* tiles;             // [kBulkStages][k_area + v_area]
  uint16_t* offs;             // [kBulkStages][K, V][kDT]
  uint64_t* full;             // [kBulkStages]
  uint64_t* empty;            // [kBulkStages]
  const uint8_t** next_blks;  // [kDThreads / 32][kPrefetchedSegments]: the KV blocks of the warp's next tile
  int k_area, buf_bytes;

  // Tile indices are 32-bit (SplitRange::n_tiles): 64-bit ones took two instructions for each add and compare.
  __device__ __forceinline__ int stage_of(int i) const {
    return static_cast<int>(static_cast<uint32_t>(i) % kBulkStages);
  }
  __device__ __forceinline__ unsigned use_of(int i) const { return static_cast<uint32_t>(i) / kBulkStages; }

  // The lane's prefetched block pointer (lanes below kPrefetchedSegments).
  __device__ __forceinline__ const uint8_t** slot() const {
    return next_blks + (threadIdx.x >> 5) * kPrefetchedSegments + (threadIdx.x & 31);
  }
  // The KV block pointers of tile i's segments (the lane's one) into the warp's slot, if tile i exists.
  __device__ __forceinline__ void prefetch_blocks(const TqKvBlocks& kv, const SplitRange& s, int i) const {
    if (i >= s.n_tiles) return;
    const uint32_t B = static_cast<uint32_t>(kv.block_tokens);
    const uint32_t p0 = static_cast<uint32_t>(s.j0) + static_cast<uint32_t>(i * kDT);
    const uint32_t b0 = div_block(p0, B), lane = threadIdx.x & 31;
    if (lane < kPrefetchedSegments && static_cast<int>(lane) < tile_segments(p0 - b0 * B, s.tile_count(i), B))
      copy8_async(slot(), kv.blocks + b0 + lane);
  }
  // Tile i's copies by the calling warp: its block pointers (prefetched), the stage free, then issue_tile_bulk.
  __device__ __forceinline__ void issue(const TqKvBlocks& kv, int64_t kh, const SplitRange& s, int i,
                                        EncodeGate& gate) const {
    const int st = stage_of(i), n = s.tile_count(i);
    if (i >= kBulkStages) mbarrier_wait(empty + st, (use_of(i) - 1) & 1u);
    async_wait_all();
    const uint8_t* blk0 = (threadIdx.x & 31) < kPrefetchedSegments ? *slot() : nullptr;  // the lane's own copy
    const int64_t p0 = s.j0 + int64_t{i} * kDT;
    gate.before(p0 + n);
    uint8_t* t = tiles + st * buf_bytes;
    uint16_t* o = offs + st * 2 * kDT;
    issue_tile_bulk(kv, kh, p0, n, t, t + k_area, o, o + kDT, full + st, threadIdx.x & 31, blk0);
  }

  // Every thread of the block, before the block's set-up (whose barrier makes the initialisation visible): lane 0
  // initialises the barriers, warp w prefetches the blocks of tile w, and warp 0 issues tile 0.
  __device__ __forceinline__ void begin(const TqKvBlocks& kv, int64_t kh, const SplitRange& s,
                                        EncodeGate& gate) const {
    const int warp = static_cast<int>(threadIdx.x >> 5);
    prefetch_blocks(kv, s, warp);
    if (warp != 0) return;
    if (threadIdx.x == 0) {
      for (int i = 0; i < kBulkStages; ++i) mbarrier_init(full + i, 1), mbarrier_init(empty + i, kDThreads / 32);
      mbarrier_init_fence();
    }
    __syncwarp();
    if (s.n_tiles > 0) {
      issue(kv, kh, s, 0, gate);
      prefetch_blocks(kv, s, 4);
    }
  }
  // At the start of tile it, by every warp: tile it + 1 issued (by its warp), then tile it's bytes awaited. Returns
  // tile it's positions; its records are at stage stage_of(it).
  __device__ __forceinline__ int next(const TqKvBlocks& kv, int64_t kh, const SplitRange& s, int it,
                                      EncodeGate& gate) const {
    if (it + 1 < s.n_tiles && static_cast<int>(threadIdx.x >> 5) == ((it + 1) & 3)) {
      issue(kv, kh, s, it + 1, gate);
      prefetch_blocks(kv, s, it + 5);
    }
    mbarrier_wait(full + stage_of(it), use_of(it) & 1u);
    return s.tile_count(it);
  }
  // The warp is done with tile it's stage (its lanes' reads before lane 0's arrival).
  __device__ __forceinline__ void release(int it) const {
    __syncwarp();
    if ((threadIdx.x & 31) == 0) mbarrier_arrive(empty + stage_of(it));
  }
};

// One head's online softmax over a tile of n positions (one max and one sum per tile, not per position), by one
// warp: lane takes positions lane and lane + 32, raw(p) their raw scores. pr: their probabilities (0 past n);
// returns the correction of the earlier tiles' sums and outputs.
template <class Raw>
__device__ __forceinline__ float tile_softmax(Raw raw, int n, float scale, float softcap, int lane, float& m_run,
                                              float& l_run, float (&pr)[kDT / 32]) {
  float sv[kDT / 32], tmax = -INFINITY;
#pragma unroll
  for (int k = 0; k < kDT / 32; ++k) {
    const int p = lane + 32 * k;
    float s = -INFINITY;
    if (p < n) {
      s = raw(p) * scale;
      if (softcap > 0.0f) s = softcap * tanhf(s / softcap);
    }
    sv[k] = s;
    tmax = fmaxf(tmax, s);
  }
  tmax = warp_max(tmax);
  const float m_new = fmaxf(m_run, tmax);
  const float corr = m_new == -INFINITY ? 1.0f : expf(m_run - m_new);
  float psum = 0.0f;
#pragma unroll
  for (int k = 0; k < kDT / 32; ++k) {
    pr[k] = sv[k] == -INFINITY ? 0.0f : expf(sv[k] - m_new);
    psum += pr[k];
  }
  l_run = l_run * corr + warp_sum(psum);
  m_run = m_new;
  return corr;
}

}  // namespace lmlab::kernels::cuda::tq
