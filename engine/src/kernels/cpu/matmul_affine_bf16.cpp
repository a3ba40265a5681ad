// MLX affine prefill GEMM on AVX512_BF16 (see matmul_affine_bf16.h for the arithmetic and why it is exact in W).
//
// Layout as the bf16 GEMM's (bf16_pack.h): X split into (hi, lo) and packed once per call, shared by the threads;
// W unpacked per thread, per block of kMc panels (16 rows) x kKc column pairs, into [panel][pairs][16] u32 of
// bf16 level pairs (rows in the lanes), with the block's scales and biases beside it as [panel][group][2][16] f32.
// Micro-kernel: 2 panels (32 rows) x 12 tokens. Per group it accumulates the level dot products in 24 zmm (48
// vdpbf16ps per column pair, 24 for hi and 24 for lo), then folds each into a running sum with one FMA by the
// scale and one by the bias times the group's sum of x (2 FMAs per gs dot products). Threads split the rows in
// panels, each unpacking only its own rows.
#include "kernels/cpu/matmul_affine_bf16.h"

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <utility>

#include "kernels/cpu/bf16_pack.h"
#include "kernels/cpu/isa.h"
#include "util/thread_pool.h"

namespace lmlab::kernels::cpu {

bool matmul_affine_bf16_supported(const AffineWeight& w) {
  return (w.bits == 4 || w.bits == 8) && w.group_size >= 32 && w.group_size % 32 == 0 &&
         (2 * bf16_pack::kPackPairs) % w.group_size == 0 && w.cols > 0 && w.cols % w.group_size == 0;
}

bool matmul_affine_uses_bf16_gemm(const MatmulAffineArgs& a) {
  return a.n >= kAffineBf16MinTokens && matmul_affine_bf16_supported(a.w) && active_isa() == Isa::avx512 &&
         avx512_bf16_enabled();
}

#if LMLAB_X86
namespace {

using bf16_pack::AlignedU32;
using bf16_pack::rows_mask;

constexpr int64_t kKc = bf16_pack::kPackPairs;  // column pairs per reduction block (whole groups)
constexpr int kXT = bf16_pack::kPackTokens;     // tokens per packed X block
constexpr int kT = kXT;                         // tokens per micro tile: one packed X block
constexpr int64_t kMc = 32;                     // panels per unpacked W block: 32 * 16 * kKc * 4 = 256 KiB (L2)

// 16 level pairs of one row from pair p: u32 lane k = (bf16 q[2(p+k)], bf16 q[2(p+k)+1]). Levels < 256 convert
// to f32 exactly with zero low 16 bits, so the bf16 is the f32's upper half.
template <int BITS>
LMLAB_TARGET_AVX512_BF16 inline __m512i level_pairs(const uint8_t* row, int64_t p) {
  __m512i v, lo, hi;
  if constexpr (BITS == 4) {  // pair p = byte p: low nibble first
    v = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + p)));
    lo = _mm512_and_si512(v, _mm512_set1_epi32(0xf));
    hi = _mm512_srli_epi32(v, 4);
  } else {  // pair p = bytes 2p, 2p + 1
    v = _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 2 * p)));
    lo = _mm512_and_si512(v, _mm512_set1_epi32(0xffff));
    hi = _mm512_srli_epi32(v, 16);
  }
  const __m512i lf = _mm512_castps_si512(_mm512_cvtepi32_ps(lo)), hf = _mm512_castps_si512(_mm512_cvtepi32_ps(hi));
  return _mm512_or_si512(_mm512_srli_epi32(lf, 16), _mm512_and_si512(hf, _mm512_set1_epi32(static_cast<int>(0xffff0000u))));
}

// Panels [q0, q0 + nq), pairs [p0, p0 + np) (whole groups) -> out [nq][np][16] and sb [nq][np / gp][2][16]
// (scales, biases; rows past the last are 0).
template <int BITS>
LMLAB_TARGET_AVX512_BF16 void pack_w(const AffineWeight& w, int64_t q0, int64_t nq, int64_t p0, int64_t np,
                                     uint32_t* out, float* sb) {
  const int64_t row_bytes = w.words_per_row() * 4, G = w.groups_per_row(), gp = w.group_size / 2;
  const int64_t g0 = p0 / gp, ngb = np / gp;
  for (int64_t q = 0; q < nq; ++q) {
    const int64_t r0 = (q0 + q) * 16, nr = std::min<int64_t>(16, w.rows - r0);
    const auto* base = reinterpret_cast<const uint8_t*>(w.packed) + r0 * row_bytes;
    uint32_t* o = out + q * np * 16;
    for (int64_t p = p0; p < p0 + np; p += 16, o += 256) {  // np is a multiple of 16 (gp is)
      __m512i r[16];
      for (int i = 0; i < 16; ++i) r[i] = i < nr ? level_pairs<BITS>(base + i * row_bytes, p) : _mm512_setzero_si512();
      // The next panel's rows, a panel ahead (as the bf16 GEMM's pack_w: more row streams than the hardware
      // prefetcher follows).
      for (int64_t i = 0; i < std::min<int64_t>(16, w.rows - r0 - 16) && q + 1 < nq; ++i)
        _mm_prefetch(reinterpret_cast<const char*>(base + (16 + i) * row_bytes + p * BITS / 4), _MM_HINT_T1);
      simd::transpose16(r);
      for (int j = 0; j < 16; ++j) _mm512_store_si512(o + j * 16, r[j]);
    }
    float* s = sb + q * ngb * 32;
    for (int64_t g = 0; g < ngb; ++g)
      for (int64_t i = 0; i < 16; ++i) {
        const int64_t k = (r0 + i) * G + g0 + g;
        s[g * 32 + i] = i < nr ? affine_scale_value(w.scales, w.scale_type, k) : 0.0f;
        s[g * 32 + 16 + i] = i < nr ? affine_scale_value(w.biases, w.scale_type, k) : 0.0f;
      }
  }
}

// R panels x T tokens over np pairs in groups of gp. w: [R][np][16]; sb: [R][np / gp][2][16]; x: the packed X
// block ([kT][kKc][2]); xs: group sums of x at the block's first group, token stride G; y: [T, ldy] at the tile's
// first row. accumulate: add into y (later column blocks). The group dot products take the registers (24 chains:
// fewer, e.g. 12 dot and 12 running sums, leave vdpbf16ps waiting on its latency); the running sums stay in an
// L1 array, read and written once per group.
template <int R, int T>
LMLAB_TARGET_AVX512_BF16 void tile(const uint32_t* w, int64_t np, int64_t gp, const float* sb, const uint32_t* x,
                                   const float* xs, int64_t G, float* y, int64_t ldy, __mmask16 m0, __mmask16 m1,
                                   bool accumulate) {
  const __mmask16 m[2] = {m0, m1};
  const int64_t ngb = np / gp;
  alignas(64) float acc[R][T][16];
#pragma GCC unroll 12
  for (int j = 0; j < T; ++j)
#pragma GCC unroll 2
    for (int i = 0; i < R; ++i)
      _mm512_store_ps(acc[i][j], accumulate ? _mm512_maskz_loadu_ps(m[i], y + j * ldy + 16 * i) : _mm512_setzero_ps());
  const uint32_t* w1 = w + np * 16;
  for (int64_t g = 0; g < ngb; ++g) {
    __m512 dot[R][T];
#pragma GCC unroll 12
    for (int j = 0; j < T; ++j)
#pragma GCC unroll 2
      for (int i = 0; i < R; ++i) dot[i][j] = _mm512_setzero_ps();
    for (int64_t p = g * gp; p < (g + 1) * gp; ++p) {
      __m512bh wv[R];
      wv[0] = reinterpret_cast<__m512bh>(_mm512_load_si512(w + p * 16));
      if constexpr (R == 2) wv[1] = reinterpret_cast<__m512bh>(_mm512_load_si512(w1 + p * 16));
#pragma GCC unroll 12
      for (int j = 0; j < T; ++j) {
        const __m512bh h = reinterpret_cast<__m512bh>(_mm512_set1_epi32(static_cast<int>(x[(j * kKc + p) * 2])));
#pragma GCC unroll 2
        for (int i = 0; i < R; ++i) dot[i][j] = _mm512_dpbf16_ps(dot[i][j], wv[i], h);
      }
#pragma GCC unroll 12
      for (int j = 0; j < T; ++j) {
        const __m512bh l = reinterpret_cast<__m512bh>(_mm512_set1_epi32(static_cast<int>(x[(j * kKc + p) * 2 + 1])));
#pragma GCC unroll 2
        for (int i = 0; i < R; ++i) dot[i][j] = _mm512_dpbf16_ps(dot[i][j], wv[i], l);
      }
    }
#pragma GCC unroll 2
    for (int i = 0; i < R; ++i) {
      const float* s = sb + (i * ngb + g) * 32;
      const __m512 sv = _mm512_load_ps(s), bv = _mm512_load_ps(s + 16);
#pragma GCC unroll 12
      for (int j = 0; j < T; ++j) {
        const __m512 a = _mm512_fmadd_ps(sv, dot[i][j], _mm512_load_ps(acc[i][j]));
        _mm512_store_ps(acc[i][j], _mm512_fmadd_ps(bv, _mm512_set1_ps(xs[j * G + g]), a));
      }
    }
  }
#pragma GCC unroll 12
  for (int j = 0; j < T; ++j)
#pragma GCC unroll 2
    for (int i = 0; i < R; ++i) _mm512_mask_storeu_ps(y + j * ldy + 16 * i, m[i], _mm512_load_ps(acc[i][j]));
}

using TileFn = void (*)(const uint32_t*, int64_t, int64_t, const float*, const uint32_t*, const float*, int64_t,
                        float*, int64_t, __mmask16, __mmask16, bool);

template <int R, int... Ts>
constexpr std::array<TileFn, sizeof...(Ts)> tile_table(std::integer_sequence<int, Ts...>) {
  return {&tile<R, Ts + 1>...};
}
// kTiles[R - 1][T - 1]
const std::array<TileFn, kT> kTiles[2] = {tile_table<1>(std::make_integer_sequence<int, kT>{}),
                                          tile_table<2>(std::make_integer_sequence<int, kT>{})};

// Group sums of x for tokens [t0, t1): xs [n, G].
LMLAB_TARGET_AVX512_BF16 void group_sums(const MatmulAffineArgs& a, int64_t t0, int64_t t1, float* xs) {
  const int64_t G = a.w.groups_per_row(), gs = a.w.group_size;
  for (int64_t t = t0; t < t1; ++t)
    for (int64_t g = 0; g < G; ++g) {
      const float* x = a.x + t * a.w.cols + g * gs;
      __m512 s = _mm512_loadu_ps(x);
      for (int64_t c = 16; c < gs; c += 16) s = _mm512_add_ps(s, _mm512_loadu_ps(x + c));
      xs[t * G + g] = _mm512_reduce_add_ps(s);
    }
}

// Panels [q0, q1) of the output for all tokens; xp: packed X of all token blocks; xs: group sums [n, G].
template <int BITS>
void gemm_panels(const MatmulAffineArgs& a, const uint32_t* xp, const float* xs, int64_t q0, int64_t q1) {
  const AffineWeight& w = a.w;
  const int64_t P = w.cols / 2, gp = w.group_size / 2, G = w.groups_per_row(), rows = w.rows;
  const int64_t n_tb = (a.n + kXT - 1) / kXT, n_kb = (P + kKc - 1) / kKc;
  const int64_t mc = std::min(kMc, q1 - q0), kc = std::min(kKc, P);
  thread_local AlignedU32 wbuf, sbuf;
  uint32_t* wb = wbuf.reserve(static_cast<size_t>(mc * kc * 16));
  auto* sb = reinterpret_cast<float*>(sbuf.reserve(static_cast<size_t>(mc * (kc / gp) * 32)));
  for (int64_t p0 = 0; p0 < P; p0 += kKc) {
    const int64_t np = std::min(kKc, P - p0), ngb = np / gp;
    for (int64_t m0 = q0; m0 < q1; m0 += kMc) {
      const int64_t nm = std::min(kMc, q1 - m0);
      pack_w<BITS>(w, m0, nm, p0, np, wb, sb);
      for (int64_t b = 0; b < n_tb; ++b) {
        const int64_t nt = std::min<int64_t>(kXT, a.n - b * kXT);
        const uint32_t* xb = xp + (b * n_kb + p0 / kKc) * kXT * kKc * 2;
        for (int64_t q = 0; q < nm; q += 2) {
          const int64_t R = std::min<int64_t>(2, nm - q), r0 = (m0 + q) * 16;
          const __mmask16 k0 = rows_mask(rows - r0), k1 = R == 2 ? rows_mask(rows - r0 - 16) : __mmask16(0);
          const int64_t t = b * kXT;
          kTiles[R - 1][nt - 1](wb + q * np * 16, np, gp, sb + q * ngb * 32, xb, xs + t * G + p0 / gp, G,
                                a.y + t * rows + r0, rows, k0, k1, p0 > 0);
        }
      }
    }
  }
}

}  // namespace

void matmul_affine_bf16(const MatmulAffineArgs& a) {
  const AffineWeight& w = a.w;
  if (w.rows <= 0 || a.n <= 0) return;
  const int64_t n_tb = (a.n + kXT - 1) / kXT, block_u32 = bf16_pack::x_block_u32(w.cols), Q = (w.rows + 15) / 16;
  // The caller's buffers, named here: a lambda running on a worker would see the worker's own thread_local.
  thread_local AlignedU32 xbuf, sbuf;
  uint32_t* xp = xbuf.reserve(static_cast<size_t>(n_tb * block_u32));
  auto* xs = reinterpret_cast<float*>(sbuf.reserve(static_cast<size_t>(a.n * w.groups_per_row())));
  ThreadPool& pool = ThreadPool::global();
  pool.parallel_for(
      n_tb,
      [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b) {
          const int64_t t0 = b * kXT, nt = std::min<int64_t>(kXT, a.n - t0);
          bf16_pack::pack_x(a.x + t0 * w.cols, w.cols, nt, xp + b * block_u32);
          group_sums(a, t0, t0 + nt, xs);
        }
      },
      std::max<int64_t>(1, (int64_t{1} << 15) / (kXT * w.cols)));
  // At least 2 panels (one full tile) and ~1M multiply-adds per task.
  const int64_t min_panels = std::max<int64_t>(2, (int64_t{1} << 20) / (16 * w.cols * a.n));
  const auto run = w.bits == 4 ? &gemm_panels<4> : &gemm_panels<8>;
  pool.parallel_for(Q, [&](int64_t q0, int64_t q1) { run(a, xp, xs, q0, q1); }, min_panels);
}

#else
void matmul_affine_bf16(const MatmulAffineArgs&) {
  std::fprintf(stderr, "lmlab: matmul_affine_bf16 called on a machine without AVX512_BF16\n");
  std::abort();
}
#endif  // LMLAB_X86

}  // namespace lmlab::kernels::cpu
