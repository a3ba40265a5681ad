// Tiled prefill attention on tensor cores (FlashAttention-2's loop on mma.sync), shared by the f16 cache
// (attention.cu) and the TurboQuant / affine records (turboquant.cu), which differ only in how a tile of history is
// staged. The decode kernels read every key and value row once per query: a 40K-token prompt read its history 40K
// times. Here a block takes 64 query rows (a row = one query head of one query; the G heads of a KV head share the
// block, so GQA reads each K/V row once per 64 rows), four warps of 16 rows, and walks the history in tiles of 64
// positions staged in shared memory as f16: each K and V row is read once per 64 query rows, and no n_q x n_kv
// matrix is formed. Per warp and tile, S = Q K^T (16 x 64), the online softmax and O += P V all stay in registers:
// the m16n8k16 accumulator of S is, element for element, the A operand P of the next MMA (FlashAttention-2's
// reuse), so only K and V go through shared memory. A block with at most 16 rows (decode: one query's G heads; a
// chunk's last block) has the four warps share those rows and take 16 of each tile's positions, merging their
// states at the end. Sources that copy (the f16 cache) stage the next tile with
// cp.async while this one is computed (two buffers); sources that decode stage in place (one tile buffer: hi + lo
// tiles are twice the size, and two blocks per SM hide more than a second buffer would; TurboQuant's source may copy
// the next tile's records ahead into its own area).
//
// Exactness: the scaled query and the probabilities are f32, so each goes in as two f16 parts, x = hi + lo
// (|x - hi - lo| <= 2^-22 |x|); the f16 cache is exact in f16, decoded records (f32: scalar x codebook value) are
// split the same way. S = Q K^T and O += P V accumulate in f32 over the products of the parts (lo x lo dropped),
// so the result is the reference's to f32 rounding (tests/cuda_kernels_test.cpp and cuda_turboquant_test.cpp check
// it with the tensor-core f32 tolerance). The parts go in times powers of two, undone exactly in f32: a lo part under
// f16's smallest normal (6.1e-5) keeps only an absolute 2^-25, which for the probabilities of a 5000-position
// history (~2e-4 each) cost 1e-4 relative and failed the bound; P x 2^14 (<= 16384) keeps its lo parts normal.
// The online softmax (running max and sum per row) is f32 in registers.
//
// A Source (the cache) provides: kLo (its tiles have lo parts), kValueScale (a power of two its staged K and V
// values are multiplied by), kAsync (stage() issues cp.async copies: double-buffered); kHasArea and smem_bytes() (an
// area of the block's shared memory for its own use, 0 for none); stage(j0, j_hi, kh, tiles, ld, area, first)
// filling K and V of positions [j0, j0 + 64) of KV head kh, zeros past j_hi and in released blocks (called by every
// thread with the same arguments, `first` for the block's first tile: it may synchronise the block);
// kColumnScales: the staged values are exact f16 values (a codebook's) of which position j's K row is k_j times and
// its V row v_j times, the scalars of the tile's positions in column_scales(area) (k [kTile], then v [kTile], f32):
// S's column j is multiplied by k_j after the MMAs and P's by v_j before P x V, so neither operand needs lo parts
// (TurboQuant's records at one group a head); rotate(rows, n,
// d, inverse) on f32 rows [n][d] in shared memory, called by every thread (TurboQuant's Pi on the queries and Pi^T
// on the outputs; nothing for f16). head_dim must be a multiple of 16 (the MMA's k; every real head_dim is) and at
// most 256; attention() sends others to decode.
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "cuda/kernels/chained_launch.cuh"
#include "cuda/kernels/prefill_attention_common.cuh"
#include "cuda/kernels/shared_fragments.cuh"

namespace lmlab::kernels::cuda::prefill {

inline constexpr int kRows = 64;     // query rows per block: 4 warps of 16
inline constexpr int kThreads = kRows * 2;
// Blocks with one warp's rows split each tile over the warps, 16 positions each, and merge the warps' states in
// rows 16 w + r of the block's 64.
static_assert(kTile == 16 * (kThreads / 32) && kRows >= 16 * (kThreads / 32), "quarter tiles: 16 positions a warp");

// Up to head_dim 128 each warp keeps its split query as fragments in registers (64 registers) beside O (64), and
// two blocks fit on an SM; above, the query is read from shared memory per tile and O takes 128 registers.
template <int DMAX>
inline constexpr bool kQInRegisters = DMAX <= 128;

// Shared memory of a block (offsets in bytes, 128-byte aligned). The f32 rows of the rotations ([64][head_dim],
// before the first tile and after the last) lie over the tiles; with the query in registers its f16 staging lies
// there too, after those rows.
struct Smem {
  int half_ld;
  unsigned tiles, tile_bytes, rows_f32, q_hi, q_lo, row_pos, row_lo, row_head, warp_ml, source, bytes;
  // source_bytes: the Source's own area (its smem_bytes()), last.
  __host__ __device__ Smem(int head_dim, bool lo, int stages, bool q_in_registers, unsigned source_bytes) {
    half_ld = head_dim + kHalfPad;
    auto round = [](unsigned b) { return (b + 127) / 128 * 128; };
    const unsigned part = round(static_cast<unsigned>(kTile * half_ld * 2));  // one f16 tile of K or V
    const unsigned q_part = round(static_cast<unsigned>(kRows * half_ld * 2));
    const unsigned rows_bytes = round(static_cast<unsigned>(kRows * head_dim * 4));
    tile_bytes = part * (lo ? 4 : 2);
    tiles = 0, rows_f32 = 0;
    unsigned at = tile_bytes * stages;
    if (q_in_registers) {
      q_hi = rows_bytes, q_lo = rows_bytes + q_part;
      if (at < rows_bytes + 2 * q_part) at = rows_bytes + 2 * q_part;
    } else {
      q_hi = at, q_lo = at + q_part;
      at += 2 * q_part;
    }
    row_pos = at, row_lo = at + kRows * 8, row_head = at + 2 * kRows * 8, warp_ml = at + 3 * kRows * 8;
    source = round(warp_ml + kRows * 2 * 4);
    bytes = source + source_bytes;
  }
  __device__ Tiles tiles_at(unsigned char* smem, int stage, bool lo) const {
    const unsigned part = tile_bytes / (lo ? 4 : 2);
    unsigned char* base = smem + tiles + stage * tile_bytes;
    return Tiles{reinterpret_cast<__half*>(base), lo ? reinterpret_cast<__half*>(base + 2 * part) : nullptr,
                 reinterpret_cast<__half*>(base + part), lo ? reinterpret_cast<__half*>(base + 3 * part) : nullptr};
  }
};

// The shared-memory layout of kernel<DMAX, Source> for head_dim and src: the kernel's, its launch's and the
// occupancy query's.
template <int DMAX, class Source>
__host__ __device__ Smem smem_layout(int64_t head_dim, const Source& src) {
  return Smem(static_cast<int>(head_dim), Source::kLo, Source::kAsync ? 2 : 1, kQInRegisters<DMAX>, src.smem_bytes());
}

// Two f32 values as f16x2 hi and lo registers (the first in the low half: the smaller column).
__device__ __forceinline__ void split2(float a, float b, uint32_t& hi, uint32_t& lo) {
  const __half2 h = __floats2half2_rn(a, b);
  const float2 hf = __half22float2(h);
  const __half2 l = __floats2half2_rn(a - hf.x, b - hf.y);
  hi = *reinterpret_cast<const uint32_t*>(&h);
  lo = *reinterpret_cast<const uint32_t*>(&l);
}

// d += a (16 x 16, row) b (16 x 8, col), f16 inputs, f32 accumulators.
__device__ __forceinline__ void mma_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// 2^k as a float for k <= 127, exactly (0 under 2^-126: the sources' V scalars never need it).
__device__ __forceinline__ float pow2(int k) { return k < -126 ? 0.0f : __int_as_float((k + 127) << 23); }
// The smallest e with 2^e > |x| for x below 2^127 (from the exponent field: e = -126 for zero and subnormals).
__device__ __forceinline__ int exponent_above(float x) { return ((__float_as_int(x) >> 23) & 255) - 126; }
inline constexpr int kNoExponent = -1000;  // a V scale exponent before the first tile (O is zero)
inline constexpr int kMinVExponent = -30;
inline constexpr float kLog2e = 1.4426950408889634f;

// c0 / c1 (two n tiles of 8) += (hi + lo) b over the parts but lo x lo: hi b + lo b, and hi b_lo when the other
// operand has lo parts too (kBLo; b_lo is not read otherwise). b, b_lo: the two tiles' fragment pairs (ldmatrix x4).
template <bool kBLo>
__device__ __forceinline__ void mma_parts(float (&c0)[4], float (&c1)[4], const uint32_t (&hi)[4],
                                          const uint32_t (&lo)[4], const uint32_t (&b)[4], const uint32_t (&b_lo)[4]) {
  mma_16816(c0, hi, b[0], b[1]), mma_16816(c0, lo, b[0], b[1]);
  mma_16816(c1, hi, b[2], b[3]), mma_16816(c1, lo, b[2], b[3]);
  if constexpr (kBLo) mma_16816(c0, hi, b_lo[0], b_lo[1]), mma_16816(c1, hi, b_lo[2], b_lo[3]);
}

template <int DMAX, class Source>
__global__ void __launch_bounds__(kThreads, kQInRegisters<DMAX> ? 2 : 1) kernel(Params a, Source src) {
  chain_enter();
  constexpr bool kQRegs = kQInRegisters<DMAX>;
  constexpr int kStages = Source::kAsync ? 2 : 1;
  constexpr int kSteps = DMAX / 16;  // k steps of S over head_dim, and pairs of O's n tiles
  extern __shared__ __align__(128) unsigned char smem[];
  const Smem L = smem_layout<DMAX>(a.head_dim, src);
  unsigned char* source_area = smem + L.source;
  __half* q_hi = reinterpret_cast<__half*>(smem + L.q_hi);
  __half* q_lo = reinterpret_cast<__half*>(smem + L.q_lo);
  float* rows_f32 = reinterpret_cast<float*>(smem + L.rows_f32);
  int64_t* row_pos = reinterpret_cast<int64_t*>(smem + L.row_pos);  // -1: no query in this row
  int64_t* row_lo = reinterpret_cast<int64_t*>(smem + L.row_lo);
  int64_t* row_head = reinterpret_cast<int64_t*>(smem + L.row_head);  // the row's (query, head) in q and out, or -1

  const int64_t kh = blockIdx.x;
  const int G = a.group;  // int: the row -> (query, head) divisions below stay 32-bit
  const int D = static_cast<int>(a.head_dim), ld = L.half_ld, steps = D / 16;
  const int64_t t0 = int64_t(blockIdx.y) * a.queries_per_block;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int g = lane >> 2, t = lane & 3;  // the MMA fragments' row group and column pair

  // The rows holding queries, rounded up to whole warps: all 64 in prefill, one warp's 16 in decode (G <= 8 rows
  // of one query), where staging and writing out 64 rows cost more than a split's few tiles (every loop below over
  // rows stops there; with 16 rows the four warps share them, see `quarter` below).
  const int64_t block_queries = min(int64_t{a.queries_per_block}, a.n_q - t0);
  const int rows_used = static_cast<int>(min(int64_t{kRows}, (block_queries * G + 15) / 16 * 16));
  // Rows: r -> query t0 + r / G, head kh G + r % G, worked out once per row (the loops over rows x head_dim below
  // take a warp per row and a lane per element: no divisions per element); the scaled query (rotated by the
  // source), split hi + lo.
  for (int r = tid; r < kRows; r += kThreads) {
    const int64_t q = t0 + r / G;
    const bool ok = r / G < a.queries_per_block && q < a.n_q;
    const int64_t pos = ok ? a.positions[q] : -1;
    row_pos[r] = pos;
    row_lo[r] = ok && a.window > 0 ? max(int64_t{0}, pos - a.window + 1) : 0;
    row_head[r] = ok ? q * a.n_heads + kh * G + r % G : -1;
  }
  __syncthreads();
  for (int r = warp; r < rows_used; r += kThreads / 32) {
    const float* qr = row_head[r] >= 0 ? a.q + row_head[r] * D : nullptr;
    for (int d = lane; d < D; d += 32) rows_f32[r * D + d] = qr ? qr[d] * a.scale : 0.0f;
  }
  __syncthreads();
  src.rotate(rows_f32, rows_used, D, false);
  for (int r = warp; r < rows_used; r += kThreads / 32)
    for (int d = lane; d < D; d += 32) split(rows_f32[r * D + d] * kQScale, q_hi + r * ld + d, q_lo + r * ld + d);
  __syncthreads();

  // One warp's rows (decode: G <= 8 rows of one query): the four warps share those 16 rows and split each tile's
  // 64 positions, 16 each, merging their states at the end; otherwise warp w owns rows [16 w, 16 w + 16) and whole
  // tiles. (With one warp computing, a decode block spent ~256 MMAs per tile on one SM sub-partition.)
  const bool quarter = rows_used <= 16;
  const int row_base = quarter ? 0 : warp * 16;
  // ldmatrix addresses: lane l serves row (l & 7) of 8 x 8 matrix l >> 3.
  const int mat = lane >> 3, mrow = lane & 7;
  // A fragments (16 x 16 at row 0, column k0) of this warp's query rows.
  const int a_row = row_base + (lane & 15), a_col = (lane >> 4) * 8;
  uint32_t qh[kQRegs ? kSteps : 1][4], ql[kQRegs ? kSteps : 1][4];
  if constexpr (kQRegs) {
#pragma unroll
    for (int ks = 0; ks < kSteps; ++ks)
      if (ks < steps) {
        ldmatrix_x4(qh[ks], q_hi + a_row * ld + ks * 16 + a_col);
        ldmatrix_x4(ql[ks], q_lo + a_row * ld + ks * 16 + a_col);
      }
    __syncthreads();  // the staging lies over the tiles
  }

  // The history this block needs: [min lo, max pos] of its rows (with splits, this block's share of it), and of
  // the rows this warp computes (its own 16, or the shared 16 of a quarter-tile block).
  int64_t j_lo = INT64_MAX, j_hi = -1, warp_lo = INT64_MAX, warp_hi = -1;
  for (int r = 0; r < rows_used; ++r) {
    if (row_pos[r] < 0) continue;
    j_lo = min(j_lo, row_lo[r]), j_hi = max(j_hi, row_pos[r]);
    if (r / 16 == row_base / 16) warp_lo = min(warp_lo, row_lo[r]), warp_hi = max(warp_hi, row_pos[r]);
  }
  if (a.splits > 1 && j_lo <= j_hi) {  // whole tiles per split, so the tiles stay aligned to the history's start
    const int64_t tiles = (j_hi - j_lo) / kTile + 1, per = (tiles + a.splits - 1) / a.splits;
    const int64_t s_lo = j_lo + blockIdx.z * per * kTile;
    j_hi = min(j_hi, s_lo + per * kTile - 1);
    j_lo = s_lo;  // past j_hi for a split with no tiles: the loop below does not run
    warp_lo = max(warp_lo, j_lo), warp_hi = min(warp_hi, j_hi);
  }
  // This thread's two rows of every fragment: g and g + 8 of the warp's 16.
  const int64_t pos_r[2] = {row_pos[row_base + g], row_pos[row_base + g + 8]};
  const int64_t lo_r[2] = {row_lo[row_base + g], row_lo[row_base + g + 8]};
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};  // l: this thread's share of the row sums
  // kColumnScales: P's columns go in as p v_j 2^-v_exp, v_exp the exponent above every |v_j| this warp has seen
  // (so p v_j 2^-v_exp kPScale stays under f16's range); when a tile raises it, O is rescaled with the softmax's
  // correction (a power of two: exact), and the outputs times 2^v_exp at the end.
  int v_exp = kNoExponent;
  const float* col_scales = nullptr;
  if constexpr (Source::kColumnScales) col_scales = src.column_scales(source_area);
  float o[2 * kSteps][4];
#pragma unroll
  for (int n = 0; n < 2 * kSteps; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
  constexpr float kSUnscale = 1.0f / (kQScale * Source::kValueScale);

  if (kStages == 2 && j_lo <= j_hi) {
    src.stage(j_lo, j_hi, kh, L.tiles_at(smem, 0, Source::kLo), ld, source_area, true);
    async_commit();
  }
  int buffer = 0;
  for (int64_t j0 = j_lo; j0 <= j_hi; j0 += kTile, buffer ^= kStages - 1) {
    if constexpr (kStages == 2) {
      if (j0 + kTile <= j_hi) {
        src.stage(j0 + kTile, j_hi, kh, L.tiles_at(smem, buffer ^ 1, Source::kLo), ld, source_area, false);
        async_commit();
        async_wait<1>();  // this tile's copies are done, the next one's may still fly
      } else {
        async_wait<0>();
      }
    } else {
      src.stage(j0, j_hi, kh, L.tiles_at(smem, 0, Source::kLo), ld, source_area, j0 == j_lo);
    }
    __syncthreads();
    const Tiles tiles = L.tiles_at(smem, buffer, Source::kLo);
    // Positions [j0 + c0, j0 + c0 + 8 NT) of the tile (c0 a multiple of 16) against this warp's rows: S, the online
    // softmax and O += P V, all in registers.
    auto attend = [&](auto n_tiles, int c0) {
      constexpr int NT = decltype(n_tiles)::value;  // n tiles of 8 positions: 8 (the whole tile) or 2 (a quarter)
      const int64_t s0 = j0 + c0;
      if (!(warp_hi >= s0 && warp_lo < s0 + 8 * NT)) return;
      // S[16 rows, 8 NT positions] = Q K^T over the parts: n tiles of 8 positions, in pairs per ldmatrix.
      float s[NT][4];
#pragma unroll
      for (int n = 0; n < NT; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
      for (int ks = 0; ks < kSteps; ++ks) {
        if (ks >= steps) break;
        uint32_t ah[4], al[4];
        if constexpr (kQRegs) {
#pragma unroll
          for (int i = 0; i < 4; ++i) ah[i] = qh[ks][i], al[i] = ql[ks][i];
        } else {
          ldmatrix_x4(ah, q_hi + a_row * ld + ks * 16 + a_col);
          ldmatrix_x4(al, q_lo + a_row * ld + ks * 16 + a_col);
        }
#pragma unroll
        for (int np = 0; np < NT / 2; ++np) {
          // Matrices: (n tile 2np, k lo), (2np, k hi), (2np + 1, k lo), (2np + 1, k hi).
          const int off = (c0 + np * 16 + (mat >> 1) * 8 + mrow) * ld + ks * 16 + (mat & 1) * 8;
          uint32_t kb[4], kb_lo[4];
          ldmatrix_x4(kb, tiles.k_hi + off);
          if constexpr (Source::kLo) ldmatrix_x4(kb_lo, tiles.k_lo + off);
          mma_parts<Source::kLo>(s[2 * np], s[2 * np + 1], ah, al, kb, kb_lo);
        }
      }
      // Column scales: S's columns times k_j; P's factors v_j 2^-v_exp (this thread's columns 8 n + 2 t + e).
      float vf[Source::kColumnScales ? NT : 1][2];
      float v_corr = 1.0f;
      if constexpr (Source::kColumnScales) {
        float v_max = 0.0f;
#pragma unroll
        for (int n = 0; n < NT; ++n) {
          const float2 kf = *reinterpret_cast<const float2*>(col_scales + c0 + n * 8 + 2 * t);
          const float2 vs = *reinterpret_cast<const float2*>(col_scales + kTile + c0 + n * 8 + 2 * t);
          s[n][0] *= kf.x, s[n][1] *= kf.y, s[n][2] *= kf.x, s[n][3] *= kf.y;
          vf[n][0] = vs.x, vf[n][1] = vs.y;
          v_max = fmaxf(v_max, fmaxf(fabsf(vs.x), fabsf(vs.y)));
        }
        v_max = fmaxf(v_max, __shfl_xor_sync(0xffffffffu, v_max, 1));
        v_max = fmaxf(v_max, __shfl_xor_sync(0xffffffffu, v_max, 2));
        // At least 2^-30 (f16 scalars are >= 2^-24 or 0): a tile of zero scalars (released blocks) must not push
        // 2^-v_exp kPScale past f32's range (0 x inf).
        const int e_tile = max(exponent_above(v_max), kMinVExponent);
        if (e_tile > v_exp) v_corr = pow2(v_exp - e_tile), v_exp = e_tile;  // warp-uniform
        const float down = pow2(-v_exp) * kPScale;
#pragma unroll
        for (int n = 0; n < NT; ++n) vf[n][0] *= down, vf[n][1] *= down;
      }
      // Online softmax of rows g (h = 0) and g + 8 (h = 1); a row's four lanes (t = 0..3) share its max.
      float corr[2];
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        float tile_max = -INFINITY;
        // Past j_hi: the next split's (or nothing's); else every column counts unless past the row's own range.
        const int64_t last = min(pos_r[h], j_hi);
        const bool masked = pos_r[h] < 0 || s0 + 8 * NT - 1 > last || s0 < lo_r[h];
#pragma unroll
        for (int n = 0; n < NT; ++n)
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            float x = s[n][2 * h + e] * kSUnscale;
            if (a.softcap > 0.0f) x = a.softcap * tanhf(x / a.softcap);
            if (masked) {
              const int64_t j = s0 + n * 8 + 2 * t + e;
              if (pos_r[h] < 0 || j > last || j < lo_r[h]) x = -INFINITY;
            }
            s[n][2 * h + e] = x;
            tile_max = fmaxf(tile_max, x);
          }
        tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
        tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 2));
        const float m_new = fmaxf(m[h], tile_max);
        // exp(x - m) as exp2(x log2 e - m log2 e): one FFMA and the ex2 unit's instruction (expf is ~8); m log2 e is
        // rounded once a row and tile (a factor common to the tile's probabilities), and a row without any position
        // yet (m = -inf, every x -inf) gives exp2(-inf) = 0.
        const float m_l2 = m_new == -INFINITY ? 0.0f : m_new * kLog2e;
        float sum = 0.0f;
#pragma unroll
        for (int n = 0; n < NT; ++n)
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            const float p = exp2f(fmaf(s[n][2 * h + e], kLog2e, -m_l2));
            sum += p;
            if constexpr (Source::kColumnScales) s[n][2 * h + e] = p * vf[n][e];
            else s[n][2 * h + e] = p * kPScale;
          }
        // O takes the softmax's correction and, with column scales, the change of its units (v_corr); the row sum
        // only the softmax's.
        const float soft = m[h] == -INFINITY ? 0.0f : expf(m[h] - m_new);
        corr[h] = soft * v_corr;
        l[h] = l[h] * soft + sum;
        m[h] = m_new;
      }
      // Past the first tiles a row's max rarely grows: most tiles skip O's rescaling (64 multiplies a thread).
      if (__any_sync(0xffffffffu, corr[0] != 1.0f || corr[1] != 1.0f)) {
#pragma unroll
        for (int n = 0; n < 2 * kSteps; ++n)
          o[n][0] *= corr[0], o[n][1] *= corr[0], o[n][2] *= corr[1], o[n][3] *= corr[1];
      }
      // O += P V: S's accumulators of n tiles 2kk and 2kk + 1 are P's A fragment for k step kk.
#pragma unroll
      for (int kk = 0; kk < NT / 2; ++kk) {
        uint32_t ph[4], pl[4];
        split2(s[2 * kk][0], s[2 * kk][1], ph[0], pl[0]);
        split2(s[2 * kk][2], s[2 * kk][3], ph[1], pl[1]);
        split2(s[2 * kk + 1][0], s[2 * kk + 1][1], ph[2], pl[2]);
        split2(s[2 * kk + 1][2], s[2 * kk + 1][3], ph[3], pl[3]);
#pragma unroll
        for (int dp = 0; dp < kSteps; ++dp) {
          if (dp >= steps) break;
          // Matrices (transposed): (k lo, n tile 2dp), (k hi, 2dp), (k lo, 2dp + 1), (k hi, 2dp + 1).
          const int off = (c0 + kk * 16 + (mat & 1) * 8 + mrow) * ld + dp * 16 + (mat >> 1) * 8;
          uint32_t vb[4], vb_lo[4];
          ldmatrix_x4_trans(vb, tiles.v_hi + off);
          if constexpr (Source::kLo) ldmatrix_x4_trans(vb_lo, tiles.v_lo + off);
          mma_parts<Source::kLo>(o[2 * dp], o[2 * dp + 1], ph, pl, vb, vb_lo);
        }
      }
    };
    if (quarter) attend(std::integral_constant<int, 2>{}, 16 * warp);
    else attend(std::integral_constant<int, kTile / 8>{}, 0);
    __syncthreads();  // the next stage overwrites this buffer
  }

  // Rows O / l (rotated back by the source), written out by row; the f32 rows lie over the (drained) tiles. With
  // splits: O unnormalised and the row's (max, sum) for the merge.
  // (Quarter tiles: warp w's state of row r goes to row 16 w + r and its (max, sum) to warp_ml, unscaled; the four
  // are merged into rows 0..15 below.)
  float* warp_ml = reinterpret_cast<float*>(smem + L.warp_ml);  // [kRows][2]
  const float unscale = 1.0f / (kPScale * Source::kValueScale);
  // kColumnScales: this warp's O is in units of 2^-v_exp (a quarter tile's warps each have their own).
  const float warp_scale = Source::kColumnScales && v_exp != kNoExponent ? pow2(v_exp) : 1.0f;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    l[h] += __shfl_xor_sync(0xffffffffu, l[h], 1);
    l[h] += __shfl_xor_sync(0xffffffffu, l[h], 2);
    const float inv = quarter            ? warp_scale
                      : a.splits > 1     ? unscale * warp_scale
                      : l[h] > 0.0f      ? unscale * warp_scale / l[h]
                                         : 0.0f;
    const int r = warp * 16 + g + 8 * h;
    if (quarter && t == 0) warp_ml[r * 2] = m[h], warp_ml[r * 2 + 1] = l[h];
    if (!quarter && a.splits > 1 && t == 0 && row_head[r] >= 0) {
      const int64_t slot = row_head[r] * a.splits + blockIdx.z;
      a.part_ml[slot * 2] = m[h], a.part_ml[slot * 2 + 1] = l[h];
    }
    float* row = rows_f32 + r * D;
#pragma unroll
    for (int n = 0; n < 2 * kSteps; ++n)
      if (n < 2 * steps) row[n * 8 + 2 * t] = o[n][2 * h] * inv, row[n * 8 + 2 * t + 1] = o[n][2 * h + 1] * inv;
  }
  __syncthreads();
  if (quarter) {  // row r = sum over warps w of row 16 w + r, weighed by exp(m_w - max); each (r, d) by one thread
    constexpr int kWarps = kThreads / 32;
    for (int r = warp; r < 16; r += kWarps) {
      float M = -INFINITY, wt[kWarps], sum = 0.0f;
#pragma unroll
      for (int w = 0; w < kWarps; ++w) M = fmaxf(M, warp_ml[(w * 16 + r) * 2]);
#pragma unroll
      for (int w = 0; w < kWarps; ++w) {
        wt[w] = M == -INFINITY ? 0.0f : expf(warp_ml[(w * 16 + r) * 2] - M);
        sum += warp_ml[(w * 16 + r) * 2 + 1] * wt[w];
      }
      const float inv = a.splits > 1 ? unscale : sum > 0.0f ? unscale / sum : 0.0f;
      for (int d = lane; d < D; d += 32) {
        float acc = 0.0f;
#pragma unroll
        for (int w = 0; w < kWarps; ++w) acc += rows_f32[(w * 16 + r) * D + d] * wt[w];
        rows_f32[r * D + d] = acc * inv;
      }
      if (a.splits > 1 && lane == 0 && row_head[r] >= 0) {
        const int64_t slot = row_head[r] * a.splits + blockIdx.z;
        a.part_ml[slot * 2] = M, a.part_ml[slot * 2 + 1] = sum;
      }
    }
    __syncthreads();
  }
  if (a.splits > 1) {
    for (int r = warp; r < rows_used; r += kThreads / 32) {
      if (row_head[r] < 0) continue;
      float* dst = a.part_o + (row_head[r] * a.splits + blockIdx.z) * D;
      for (int d = lane; d < D; d += 32) dst[d] = rows_f32[r * D + d];
    }
    return;
  }
  src.rotate(rows_f32, rows_used, D, true);
  for (int r = warp; r < rows_used; r += kThreads / 32) {
    if (row_head[r] < 0) continue;
    float* dst = a.out + row_head[r] * D;
    for (int d = lane; d < D; d += 32) dst[d] = rows_f32[r * D + d];
  }
}

// The kernel instantiation for a head_dim: f(std::integral_constant<int, DMAX>) with DMAX 64, 128 or 256 (the query
// in registers up to 128, from shared memory up to 256).
template <class F>
auto with_dmax(int64_t head_dim, F&& f) {
  if (head_dim <= 64) return f(std::integral_constant<int, 64>{});
  if (head_dim <= 128) return f(std::integral_constant<int, 128>{});
  return f(std::integral_constant<int, 256>{});
}

// The block's shared memory for head_dim, opted into (one grant per kernel: launches and the occupancy query share it).
template <int DMAX, class Source>
unsigned smem_opted_in(int64_t head_dim, const Source& src) {
  const unsigned bytes = smem_layout<DMAX>(head_dim, src).bytes;
  static SharedMemoryGrant granted;
  opt_in_shared_memory(kernel<DMAX, Source>, bytes, granted, "prefill attention (shared memory)");
  return bytes;
}

template <int DMAX, class Source>
void launch_dim(Params a, const Source& src, cudaStream_t stream) {
  const unsigned smem = smem_opted_in<DMAX, Source>(a.head_dim, src);
  a.queries_per_block = kRows / a.group;
  const dim3 grid(static_cast<unsigned>(a.n_kv_heads),
                  static_cast<unsigned>((a.n_q + a.queries_per_block - 1) / a.queries_per_block),
                  static_cast<unsigned>(a.splits));
  launch_chained("prefill attention", kernel<DMAX, Source>, grid, dim3(kThreads), smem, stream, a, src);
}

// Blocks of the kernel for head_dim one SM holds at once (registers, shared memory), once per process and kernel.
// Split decode sizes its splits to one wave of them: each block pays a fixed cost (its query rows, its output) and a
// second, partial wave left most SMs idle at its end.
template <int DMAX, class Source>
int resident_blocks_per_sm_dim(int64_t head_dim) {
  static_assert(!Source::kHasArea, "a source's own area is sized per layer: not cached by head_dim");
  static std::atomic<int> cached[DMAX / 16 + 1];  // by head_dim / 16 (a multiple of 16 here); 0: not yet asked
  std::atomic<int>& slot = cached[head_dim / 16];
  if (const int n = slot.load(std::memory_order_relaxed)) return n;
  const unsigned smem = smem_opted_in<DMAX, Source>(head_dim, Source{});
  int n = 0;
  if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel<DMAX, Source>, kThreads, smem) != cudaSuccess)
    (void)cudaGetLastError(), n = 1;
  slot.store(std::max(n, 1), std::memory_order_relaxed);
  return std::max(n, 1);
}
template <class Source>
int resident_blocks_per_sm(int64_t head_dim) {
  return with_dmax(head_dim, [&](auto d) { return resident_blocks_per_sm_dim<decltype(d)::value, Source>(head_dim); });
}
// The same for a source whose area is sized per layer (src's own shared memory): asked each call, a host-side
// calculation (decode graphs capture it once).
template <class Source>
int resident_blocks_per_sm_for(int64_t head_dim, const Source& src) {
  return with_dmax(head_dim, [&](auto d) {
    constexpr int DMAX = decltype(d)::value;
    const unsigned smem = smem_opted_in<DMAX, Source>(head_dim, src);
    int n = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel<DMAX, Source>, kThreads, smem) != cudaSuccess)
      (void)cudaGetLastError(), n = 1;
    return std::max(n, 1);
  });
}

// Decode (a few queries over a long history): the history split over one wave of the kernel's resident blocks
// (LMLAB_ATTENTION_BLOCKS_PER_SM overrides the wave), whole splits per block column (a second, partial wave left
// most SMs idle), at least two tiles per split; the partial states go to `scratch` (attention_scratch_bytes of n_q)
// for the caller's merge.
template <class Source>
void split_for_decode(Params& p, const Source& src, int64_t n_kv, int max_splits, void* scratch) {
  const int64_t query_blocks = (p.n_q + kRows / p.group - 1) / (kRows / p.group);
  int per_sm = attention_blocks_per_sm_override();
  if (per_sm <= 0) {
    if constexpr (Source::kHasArea) per_sm = resident_blocks_per_sm_for(p.head_dim, src);
    else per_sm = resident_blocks_per_sm<Source>(p.head_dim);
  }
  const int64_t wave = int64_t{multiprocessor_count()} * per_sm, columns = p.n_kv_heads * query_blocks;
  p.splits = decode_split_count(std::max(columns, wave / columns * columns), columns, n_kv, 2 * kTile, max_splits,
                                p.n_q, p.n_heads, p.head_dim);
  p.part_o = static_cast<float*>(scratch);
  p.part_ml = p.part_o + p.n_q * p.n_heads * p.splits * p.head_dim;
}

// The block's shared memory for head_dim and src (the kernel launch() picks).
template <class Source>
unsigned block_smem_bytes(int64_t head_dim, const Source& src) {
  return with_dmax(head_dim, [&](auto d) { return smem_layout<decltype(d)::value>(head_dim, src).bytes; });
}

template <class Source>
void launch(const Params& a, const Source& src, cudaStream_t stream) {
  with_dmax(a.head_dim, [&](auto d) { launch_dim<decltype(d)::value>(a, src, stream); });
}

}  // namespace lmlab::kernels::cuda::prefill
