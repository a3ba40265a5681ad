// Tiled prefill attention on tensor cores (FlashAttention-2's tiling), shared by the f16 cache (attention.cu) and
// the TurboQuant / affine records (turboquant.cu), which differ only in how a tile of history is staged. The
// decode kernels read every key and value row once per query: a 40K-token prompt read its history 40K times. Here
// a block takes a tile of query rows (a row = one query head of one query; the G heads of a KV head share the
// block, so GQA reads each K/V row once per tile of rows) and walks the history in tiles of 64 positions staged in
// shared memory as f16: each K and V row is read once per 64 query rows. No n_q x n_kv matrix is formed.
//
// Exactness: the scaled query and the probabilities are f32, so each goes in as two f16 parts, x = hi + lo
// (|x - hi - lo| <= 2^-22 |x|); the f16 cache is exact in f16, decoded records (f32: scalar x codebook value) are
// split the same way. S = Q K^T and O += P V accumulate in f32 over the products of the parts (lo x lo dropped),
// so the result is the reference's to f32 rounding (tests/cuda_kernels_test.cpp and cuda_turboquant_test.cpp check
// it with the f32 tolerance). The parts go in times powers of two, undone exactly in f32: a lo part under f16's
// smallest normal (6.1e-5) keeps only an absolute 2^-25, which for the probabilities of a 5000-position history
// (~2e-4 each) cost 1e-4 relative and failed the bound; P x 2^14 (<= 16384) keeps its lo parts normal.
// The online softmax (running max and sum per row) is f32 in registers.
//
// A Source (the cache) provides: kLo (its tiles have lo parts) and kValueScale (a power of two its staged K and V
// values are multiplied by); stage(j0, j_hi, kh, tiles, ld) filling K and V of positions [j0, j0 + 64) of KV head
// kh, zeros past j_hi and in released blocks; rotate(rows, n, d, inverse) on f32 rows [n][d] in shared memory,
// called by every thread (TurboQuant's Pi on the queries and Pi^T on the outputs; nothing for f16).
// head_dim must be a multiple of 16 (the MMA's k; every real head_dim is); attention() sends others to decode.
#pragma once

#include <mma.h>

#include <cmath>
#include <cstdint>

#include "cuda/kernels/prefill_attention_common.cuh"
#include "cuda/kernels/prefill_attention_mma.cuh"
#include "cuda/kernels/kernels_cuda.h"

namespace lmlab::kernels::cuda::prefill {

namespace wmma = nvcuda::wmma;

inline constexpr int kFloatPad = 4;  // of the f32 tiles

// Shared memory of a block of `rows` query rows (offsets in bytes, 128-byte aligned: wmma wants 32). With
// q_in_registers the split query is only staged there, over S and P (each warp then keeps its 16 rows as
// fragments): 34 KB less, so two blocks of 64 rows fit on an SM with the f16 cache (~103 KB each, was ~137 KB).
struct Smem {
  int half_ld, p_ld, s_ld, o_ld;
  unsigned q_hi, q_lo, k_hi, k_lo, v_hi, v_lo, s, p_hi, p_lo, o, rows_f32, row_pos, row_lo, bytes;
  __host__ __device__ Smem(int rows, int head_dim, bool lo, bool q_in_registers) {
    half_ld = head_dim + kHalfPad, p_ld = kTile + kHalfPad, s_ld = kTile + kFloatPad, o_ld = head_dim + kFloatPad;
    unsigned at = 0;
    auto take = [&](unsigned b) {
      const unsigned here = at;
      at += (b + 127) / 128 * 128;
      return here;
    };
    const unsigned q_part = rows * half_ld * 2;
    if (!q_in_registers) q_hi = take(q_part), q_lo = take(q_part);
    const unsigned tile = kTile * half_ld * 2;
    k_hi = take(tile), k_lo = lo ? take(tile) : 0, v_hi = take(tile), v_lo = lo ? take(tile) : 0;
    rows_f32 = k_hi;  // f32 rows [rows][head_dim] for the rotations, over the tiles (>= 2 x 64 x half_ld x 2 bytes)
    s = take(rows * s_ld * 4);
    p_hi = take(rows * p_ld * 2), p_lo = take(rows * p_ld * 2);
    if (q_in_registers) q_hi = s, q_lo = s + q_part;  // fits: 2 x 64 x (128 + 8) x 2 <= S + P for head_dim <= 128
    o = take(rows * o_ld * 4);
    row_pos = take(rows * 8), row_lo = take(rows * 8);
    bytes = at;
  }
};

// ROWS query rows per block, 16 per warp. 64 rows (head_dim <= 128): the query's fragments live in registers.
template <int ROWS>
inline constexpr bool kQInRegisters = ROWS == 64;
inline constexpr int kMaxRegisterKSteps = 128 / 16;

template <int ROWS, class Source>
__global__ void __launch_bounds__(ROWS * 2, kQInRegisters<ROWS> ? 2 : 1) kernel(Params a, Source src) {
  extern __shared__ __align__(128) unsigned char smem[];
  const Smem L(ROWS, static_cast<int>(a.head_dim), Source::kLo, kQInRegisters<ROWS>);
  __half* q_hi = reinterpret_cast<__half*>(smem + L.q_hi);
  __half* q_lo = reinterpret_cast<__half*>(smem + L.q_lo);
  const Tiles tiles{reinterpret_cast<__half*>(smem + L.k_hi),
                    Source::kLo ? reinterpret_cast<__half*>(smem + L.k_lo) : nullptr,
                    reinterpret_cast<__half*>(smem + L.v_hi),
                    Source::kLo ? reinterpret_cast<__half*>(smem + L.v_lo) : nullptr};
  float* s = reinterpret_cast<float*>(smem + L.s);
  __half* p_hi = reinterpret_cast<__half*>(smem + L.p_hi);
  __half* p_lo = reinterpret_cast<__half*>(smem + L.p_lo);
  float* o = reinterpret_cast<float*>(smem + L.o);
  float* rows_f32 = reinterpret_cast<float*>(smem + L.rows_f32);
  int64_t* row_pos = reinterpret_cast<int64_t*>(smem + L.row_pos);  // -1: no query in this row
  int64_t* row_lo = reinterpret_cast<int64_t*>(smem + L.row_lo);

  const int64_t kh = blockIdx.x, D = a.head_dim, G = a.group;
  const int64_t t0 = int64_t(blockIdx.y) * a.queries_per_block;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;

  // Rows: r -> query t0 + r / G, head kh G + r % G; the scaled query (rotated by the source), split hi + lo.
  for (int r = tid; r < ROWS; r += blockDim.x) {
    const int64_t t = t0 + r / G;
    const bool ok = r / G < a.queries_per_block && t < a.n_q;
    const int64_t pos = ok ? a.positions[t] : -1;
    row_pos[r] = pos;
    row_lo[r] = ok && a.window > 0 ? max(int64_t{0}, pos - a.window + 1) : 0;
  }
  for (int64_t e = tid; e < ROWS * D; e += blockDim.x) {
    const int64_t r = e / D, t = t0 + r / G;
    const bool ok = r / G < a.queries_per_block && t < a.n_q;
    rows_f32[e] = ok ? a.q[(t * a.n_heads + kh * G + r % G) * D + e % D] * a.scale : 0.0f;
  }
  __syncthreads();
  src.rotate(rows_f32, ROWS, static_cast<int>(D), false);
  for (int64_t e = tid; e < ROWS * D; e += blockDim.x) {
    const int64_t r = e / D, d = e % D;
    split(rows_f32[e] * kQScale, q_hi + r * L.half_ld + d, q_lo + r * L.half_ld + d);
    o[r * L.o_ld + d] = 0.0f;
  }
  __syncthreads();

  // The history this block needs: [min lo, max pos] of its rows, and of this warp's rows.
  int64_t j_lo = INT64_MAX, j_hi = -1, warp_lo = INT64_MAX, warp_hi = -1;
  for (int r = 0; r < ROWS; ++r) {
    if (row_pos[r] < 0) continue;
    j_lo = min(j_lo, row_lo[r]), j_hi = max(j_hi, row_pos[r]);
    if (r / 16 == warp) warp_lo = min(warp_lo, row_lo[r]), warp_hi = max(warp_hi, row_pos[r]);
  }
  // Lane pair (2 i, 2 i + 1) owns the warp's row i: columns [32 (lane & 1), + 32) of its scores.
  const int my_row = warp * 16 + lane / 2, col0 = (lane & 1) * 32;
  const int64_t my_pos = row_pos[my_row], my_lo = row_lo[my_row];
  float m = -INFINITY, l = 0.0f;
  constexpr float kSUnscale = 1.0f / (kQScale * Source::kValueScale);

  using FragA = wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major>;
  using FragAcc = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;
  // The warp's 16 query rows as fragments, loaded before the first tile's S overwrites their staging (every warp
  // passes the __syncthreads after the first stage() before any warp stores S).
  constexpr int kQSteps = kQInRegisters<ROWS> ? kMaxRegisterKSteps : 1;
  FragA qf_hi[kQSteps], qf_lo[kQSteps];
  if constexpr (kQInRegisters<ROWS>) {
#pragma unroll
    for (int ks = 0; ks < kQSteps; ++ks)
      if (ks * 16 < D) {
        wmma::load_matrix_sync(qf_hi[ks], q_hi + warp * 16 * L.half_ld + ks * 16, L.half_ld);
        wmma::load_matrix_sync(qf_lo[ks], q_lo + warp * 16 * L.half_ld + ks * 16, L.half_ld);
      }
  }
  for (int64_t j0 = j_lo; j0 <= j_hi; j0 += kTile) {
    src.stage(j0, j_hi, kh, tiles, L.half_ld);
    __syncthreads();
    if (warp_hi >= j0 && warp_lo < j0 + kTile) {
      // S[16 rows, 64] = Q K^T over the parts.
      float* sw = s + warp * 16 * L.s_ld;
      for (int c = 0; c < kTile / 16; ++c) {
        FragAcc acc;
        wmma::fill_fragment(acc, 0.0f);
        auto qk_step = [&](const FragA& qh, const FragA& ql, int64_t kk) {
          wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::col_major> kb;
          wmma::load_matrix_sync(kb, tiles.k_hi + c * 16 * L.half_ld + kk, L.half_ld);
          wmma::mma_sync(acc, qh, kb, acc);
          wmma::mma_sync(acc, ql, kb, acc);
          if constexpr (Source::kLo) {
            wmma::load_matrix_sync(kb, tiles.k_lo + c * 16 * L.half_ld + kk, L.half_ld);
            wmma::mma_sync(acc, qh, kb, acc);
          }
        };
        if constexpr (kQInRegisters<ROWS>) {
#pragma unroll
          for (int ks = 0; ks < kQSteps; ++ks)
            if (ks * 16 < D) qk_step(qf_hi[ks], qf_lo[ks], ks * 16);
        } else {
          for (int64_t kk = 0; kk < D; kk += 16) {
            FragA qh, ql;
            wmma::load_matrix_sync(qh, q_hi + warp * 16 * L.half_ld + kk, L.half_ld);
            wmma::load_matrix_sync(ql, q_lo + warp * 16 * L.half_ld + kk, L.half_ld);
            qk_step(qh, ql, kk);
          }
        }
        wmma::store_matrix_sync(sw + c * 16, acc, L.s_ld, wmma::mem_row_major);
      }
      __syncwarp();
      // Online softmax of the row over this tile.
      float p[32];
      float tile_max = -INFINITY;
      const float* srow = s + my_row * L.s_ld + col0;
#pragma unroll
      for (int i = 0; i < 32; ++i) {
        const int64_t j = j0 + col0 + i;
        float x = srow[i] * kSUnscale;
        if (a.softcap > 0.0f) x = a.softcap * tanhf(x / a.softcap);
        if (my_pos < 0 || j > my_pos || j < my_lo) x = -INFINITY;
        p[i] = x;
        tile_max = fmaxf(tile_max, x);
      }
      tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
      const float m_new = fmaxf(m, tile_max);
      float sum = 0.0f;
      __half* ph = p_hi + my_row * L.p_ld + col0;
      __half* pl = p_lo + my_row * L.p_ld + col0;
#pragma unroll
      for (int i = 0; i < 32; ++i) {
        const float e = m_new == -INFINITY ? 0.0f : expf(p[i] - m_new);
        sum += e;
        split(e * kPScale, ph + i, pl + i);
      }
      sum += __shfl_xor_sync(0xffffffffu, sum, 1);
      const float corr = m == -INFINITY ? 0.0f : expf(m - m_new);
      l = l * corr + sum;
      m = m_new;
      // O rows *= corr (the lane pair splits the row), then O += P V over the parts.
      float* orow = o + my_row * L.o_ld;
      for (int64_t d = lane & 1; d < D; d += 2) orow[d] *= corr;
      __syncwarp();
      FragA pa_hi[kTile / 16], pa_lo[kTile / 16];
#pragma unroll
      for (int c = 0; c < kTile / 16; ++c) {
        wmma::load_matrix_sync(pa_hi[c], p_hi + warp * 16 * L.p_ld + c * 16, L.p_ld);
        wmma::load_matrix_sync(pa_lo[c], p_lo + warp * 16 * L.p_ld + c * 16, L.p_ld);
      }
      float* ow = o + warp * 16 * L.o_ld;
      for (int64_t dc = 0; dc < D; dc += 16) {
        FragAcc acc;
        wmma::load_matrix_sync(acc, ow + dc, L.o_ld, wmma::mem_row_major);
#pragma unroll
        for (int c = 0; c < kTile / 16; ++c) {
          wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::row_major> vb;
          wmma::load_matrix_sync(vb, tiles.v_hi + c * 16 * L.half_ld + dc, L.half_ld);
          wmma::mma_sync(acc, pa_hi[c], vb, acc);
          wmma::mma_sync(acc, pa_lo[c], vb, acc);
          if constexpr (Source::kLo) {
            wmma::load_matrix_sync(vb, tiles.v_lo + c * 16 * L.half_ld + dc, L.half_ld);
            wmma::mma_sync(acc, pa_hi[c], vb, acc);
          }
        }
        wmma::store_matrix_sync(ow + dc, acc, L.o_ld, wmma::mem_row_major);
      }
    }
    __syncthreads();  // the next tile overwrites K and V
  }

  // Rows O / l (rotated back by the source), written out by row.
  {
    const float inv = l > 0.0f ? 1.0f / (l * (kPScale * Source::kValueScale)) : 0.0f;
    const float* orow = o + my_row * L.o_ld;
    for (int64_t d = lane & 1; d < D; d += 2) rows_f32[my_row * D + d] = orow[d] * inv;
  }
  __syncthreads();
  src.rotate(rows_f32, ROWS, static_cast<int>(D), true);
  for (int64_t e = tid; e < ROWS * D; e += blockDim.x) {
    const int64_t r = e / D, t = t0 + r / G;
    if (row_pos[r] >= 0) a.out[(t * a.n_heads + kh * G + r % G) * D + e % D] = rows_f32[e];
  }
}

template <int ROWS, class Source>
void launch_rows(Params a, const Source& src, cudaStream_t stream) {
  const Smem L(ROWS, static_cast<int>(a.head_dim), Source::kLo, kQInRegisters<ROWS>);
  static SharedMemoryGrant granted;
  opt_in_shared_memory(prefill::kernel<ROWS, Source>, L.bytes, granted);
  a.queries_per_block = ROWS / a.group;
  const dim3 grid(static_cast<unsigned>(a.n_kv_heads),
                  static_cast<unsigned>((a.n_q + a.queries_per_block - 1) / a.queries_per_block));
  prefill::kernel<ROWS, Source><<<grid, ROWS * 2, L.bytes, stream>>>(a, src);
  lmlab::cuda::check_launch("prefill attention");
}

// The kernel for a source: prefill_attention_mma.cuh's when `kernel` says so (the caller reads
// prefill_attention_kernel() once, for the source's staging too), else this one with 64 rows per block (4 warps)
// while its tiles fit in shared memory, 32 above head_dim 128.
template <class Source>
void launch(const Params& a, const Source& src, PrefillAttentionKernel kernel, cudaStream_t stream) {
  if (kernel == PrefillAttentionKernel::mma) mma::launch(a, src, stream);
  else if (a.head_dim <= 128) launch_rows<64>(a, src, stream);
  else launch_rows<32>(a, src, stream);
}

}  // namespace lmlab::kernels::cuda::prefill
