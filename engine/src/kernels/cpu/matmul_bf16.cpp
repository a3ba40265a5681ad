// bf16-weight decode GEMV and prefill GEMM on AVX512_BF16 (see matmul_bf16.h for what they compute and why
// x = hi + lo).
//
// vdpbf16ps: acc.f32[i] += a.bf16[2i] * b.bf16[2i] + a.bf16[2i+1] * b.bf16[2i+1]. A lane consumes a *pair* of
// consecutive columns, so both operands are packed in pairs (a pair = two bf16 in one u32, lower column first):
//   packed X, per block of kT tokens and kKc pairs: [kT][kKc][2] u32: token j's pair p as (hi, lo); packed once
//     per call for all tokens (a vector conversion and interleave per row, no transposition), shared by the
//     threads. Pairs past the last column are 0 (an odd last column pairs with 0).
//   packed W, per panel of 16 rows: [pairs][16] u32 (row i of the panel in lane i), missing rows 0; packed per
//     thread (16 x 16 pairs transposed in registers), per block of kMc panels x kKc pairs, and reused by every
//     token block.
// Micro-kernel: 2 panels (32 rows) x kT = 12 tokens, 24 zmm accumulators; per pair it loads 2 W vectors and
// broadcasts each token's hi and lo from the L1-resident X micro-panel (12 KiB, fixed token stride): 48
// vdpbf16ps. Output lanes are rows, so a token's 16 row sums are one contiguous store into Y [n, rows] (no
// horizontal sums); reduction blocks after the first add into Y.
// Threads split the rows in panels of 16 (each packs only its own rows of W).
#include "kernels/cpu/matmul_bf16.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <utility>
#include <vector>

#include "kernels/cpu/bf16_pack.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/simd.h"
#include "util/thread_pool.h"

namespace lmlab::kernels::cpu {

bool matmul_uses_bf16_dot(const MatmulArgs& a) {
  return a.type == WeightType::bf16 && (a.n == 1 || a.n >= kBf16GemmMinTokens) && active_isa() == Isa::avx512 &&
         avx512_bf16_enabled();
}

#if LMLAB_X86
namespace {

using bf16_pack::AlignedU32;
using bf16_pack::rows_mask;

constexpr int kT = bf16_pack::kPackTokens;      // tokens per micro tile
constexpr int64_t kKc = bf16_pack::kPackPairs;  // column pairs per reduction block: X micro-panel kT * kKc * 8 = 12 KiB
constexpr int64_t kMc = 32;    // panels (16 rows) per packed W block: kMc * 16 * kKc * 4 = 256 KiB (L2)

// Panels [q0, q0 + nq) of W (bf16 [rows, cols]), pairs [p0, p0 + np) -> out [nq][np][16]: 16 rows x 16 pairs
// loaded as u32 and transposed in registers.
LMLAB_TARGET_AVX512_BF16 void pack_w(const uint16_t* w, int64_t rows, int64_t cols, int64_t q0, int64_t nq,
                                     int64_t p0, int64_t np, uint32_t* out) {
  const int64_t full_pairs = cols / 2;  // pairs with both columns inside the row
  for (int64_t q = 0; q < nq; ++q) {
    const int64_t r0 = (q0 + q) * 16, nr = std::min<int64_t>(16, rows - r0);
    const uint16_t* base = w + r0 * cols;
    uint32_t* o = out + q * np * 16;
    for (int64_t p = p0; p < p0 + np; p += 16, o += 256) {
      const int64_t cnt = std::min<int64_t>(16, p0 + np - p);
      const int64_t full = std::clamp<int64_t>(full_pairs - p, 0, cnt);
      const __mmask16 m = rows_mask(full);
      __m512i r[16];
      for (int i = 0; i < 16; ++i)
        r[i] = i < nr ? _mm512_maskz_loadu_epi32(m, base + i * cols + 2 * p) : _mm512_setzero_si512();
      // The next panel's 16 rows at the same pairs, a panel ahead: 16 row streams a cols apart are more than the
      // hardware prefetcher follows, and these loads (W read from memory once per call) took ~11% of the 0.9B
      // synth's prefill.
      for (int64_t i = 0; i < std::min<int64_t>(16, rows - r0 - 16) && q + 1 < nq; ++i)
        _mm_prefetch(reinterpret_cast<const char*>(base + (16 + i) * cols + 2 * p), _MM_HINT_T1);
      simd::transpose16(r);
      for (int64_t j = 0; j < cnt; ++j) _mm512_store_si512(o + j * 16, r[j]);
      if (full < cnt)  // the odd last column, paired with 0
        for (int64_t i = 0; i < 16; ++i) o[full * 16 + i] = i < nr ? base[i * cols + 2 * (p + full)] : 0u;
    }
  }
}

// R panels x T tokens over np pairs. w: [R][np][16] (panel stride np * 16); x: [kT][kKc][2]; y: [T, ldy] at the
// tile's first row; m0 / m1: the rows of panel 0 / 1 that exist. accumulate: add into y (later column blocks).
template <int R, int T>
LMLAB_TARGET_AVX512_BF16 void tile(const uint32_t* w, int64_t np, const uint32_t* x, float* y, int64_t ldy,
                                   __mmask16 m0, __mmask16 m1, bool accumulate) {
  const __mmask16 m[2] = {m0, m1};
  __m512 acc[R][T];
#pragma GCC unroll 12
  for (int j = 0; j < T; ++j)
#pragma GCC unroll 2
    for (int i = 0; i < R; ++i)
      acc[i][j] = accumulate ? _mm512_maskz_loadu_ps(m[i], y + j * ldy + 16 * i) : _mm512_setzero_ps();
  const uint32_t* w1 = w + np * 16;
  for (int64_t p = 0; p < np; ++p, x += 2) {
    __m512bh wv[R];
    wv[0] = reinterpret_cast<__m512bh>(_mm512_load_si512(w + p * 16));
    if constexpr (R == 2) wv[1] = reinterpret_cast<__m512bh>(_mm512_load_si512(w1 + p * 16));
#pragma GCC unroll 12
    for (int j = 0; j < T; ++j) {
      const __m512bh h = reinterpret_cast<__m512bh>(_mm512_set1_epi32(static_cast<int>(x[j * kKc * 2])));
#pragma GCC unroll 2
      for (int i = 0; i < R; ++i) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], wv[i], h);
    }
#pragma GCC unroll 12
    for (int j = 0; j < T; ++j) {
      const __m512bh l = reinterpret_cast<__m512bh>(_mm512_set1_epi32(static_cast<int>(x[j * kKc * 2 + 1])));
#pragma GCC unroll 2
      for (int i = 0; i < R; ++i) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], wv[i], l);
    }
  }
#pragma GCC unroll 12
  for (int j = 0; j < T; ++j)
#pragma GCC unroll 2
    for (int i = 0; i < R; ++i) _mm512_mask_storeu_ps(y + j * ldy + 16 * i, m[i], acc[i][j]);
}

using TileFn = void (*)(const uint32_t*, int64_t, const uint32_t*, float*, int64_t, __mmask16, __mmask16, bool);

template <int R, int... Ts>
constexpr std::array<TileFn, sizeof...(Ts)> tile_table(std::integer_sequence<int, Ts...>) {
  return {&tile<R, Ts + 1>...};
}
// kTiles[R - 1][T - 1]
const std::array<TileFn, kT> kTiles[2] = {tile_table<1>(std::make_integer_sequence<int, kT>{}),
                                          tile_table<2>(std::make_integer_sequence<int, kT>{})};

// Panels [q0, q1) of the output for all tokens; xp: the packed X of all token blocks.
void gemm_panels(const MatmulArgs& a, const uint32_t* xp, int64_t P, int64_t q0, int64_t q1) {
  thread_local AlignedU32 wbuf;
  uint32_t* wb = wbuf.reserve(static_cast<size_t>(std::min(kMc, q1 - q0) * std::min(kKc, P) * 16));
  const auto* w = static_cast<const uint16_t*>(a.w);
  const int64_t n_tb = (a.n + kT - 1) / kT, n_kb = (P + kKc - 1) / kKc;
  for (int64_t p0 = 0; p0 < P; p0 += kKc) {
    const int64_t np = std::min(kKc, P - p0);
    for (int64_t m0 = q0; m0 < q1; m0 += kMc) {
      const int64_t nm = std::min(kMc, q1 - m0);
      pack_w(w, a.rows, a.cols, m0, nm, p0, np, wb);
      for (int64_t b = 0; b < n_tb; ++b) {
        const int64_t nt = std::min<int64_t>(kT, a.n - b * kT);
        const uint32_t* xb = xp + (b * n_kb + p0 / kKc) * kT * kKc * 2;
        float* yb = a.y + b * kT * a.rows;
        for (int64_t q = 0; q < nm; q += 2) {
          const int64_t R = std::min<int64_t>(2, nm - q), r0 = (m0 + q) * 16;
          kTiles[R - 1][nt - 1](wb + q * np * 16, np, xb, yb + r0, a.rows, rows_mask(a.rows - r0),
                                R == 2 ? rows_mask(a.rows - r0 - 16) : __mmask16(0), p0 > 0);
        }
      }
    }
  }
}

// y[0, R) = w [R, cols] . x for one token: x as bf16 hi and lo vectors [cols] (xh, xl), w's rows read in place
// (a vdpbf16ps lane takes a pair of consecutive columns of the row and of x); two accumulators per row (hi, lo).
template <int R>
LMLAB_TARGET_AVX512_BF16 void gemv_tile(const uint16_t* w, int64_t cols, const uint16_t* xh, const uint16_t* xl,
                                        float* y) {
  __m512 ah[R], al[R];
#pragma GCC unroll 4
  for (int i = 0; i < R; ++i) ah[i] = al[i] = _mm512_setzero_ps();
  int64_t c = 0;
  for (; c + 32 <= cols; c += 32) {
    const __m512bh h = reinterpret_cast<__m512bh>(_mm512_loadu_si512(xh + c));
    const __m512bh l = reinterpret_cast<__m512bh>(_mm512_loadu_si512(xl + c));
#pragma GCC unroll 4
    for (int i = 0; i < R; ++i) {
      const __m512bh wv = reinterpret_cast<__m512bh>(_mm512_loadu_si512(w + i * cols + c));
      ah[i] = _mm512_dpbf16_ps(ah[i], wv, h);
      al[i] = _mm512_dpbf16_ps(al[i], wv, l);
    }
  }
  if (c < cols) {
    const __mmask32 m = static_cast<__mmask32>((uint64_t{1} << (cols - c)) - 1);
    const __m512bh h = reinterpret_cast<__m512bh>(_mm512_maskz_loadu_epi16(m, xh + c));
    const __m512bh l = reinterpret_cast<__m512bh>(_mm512_maskz_loadu_epi16(m, xl + c));
#pragma GCC unroll 4
    for (int i = 0; i < R; ++i) {
      const __m512bh wv = reinterpret_cast<__m512bh>(_mm512_maskz_loadu_epi16(m, w + i * cols + c));
      ah[i] = _mm512_dpbf16_ps(ah[i], wv, h);
      al[i] = _mm512_dpbf16_ps(al[i], wv, l);
    }
  }
  if constexpr (R == 4) {
    _mm_storeu_ps(y, simd::hsum4(_mm512_add_ps(ah[0], al[0]), _mm512_add_ps(ah[1], al[1]),
                                 _mm512_add_ps(ah[2], al[2]), _mm512_add_ps(ah[3], al[3])));
  } else {
    for (int i = 0; i < R; ++i) y[i] = _mm512_reduce_add_ps(_mm512_add_ps(ah[i], al[i]));
  }
}

// x [cols] -> hi, lo [cols] as bf16 (x - hi is exact in f32).
LMLAB_TARGET_AVX512_BF16 void split_x(const float* x, int64_t cols, uint16_t* xh, uint16_t* xl) {
  int64_t c = 0;
  for (; c < cols; c += 16) {
    const __mmask16 m = rows_mask(cols - c);
    const __m512 v = _mm512_maskz_loadu_ps(m, x + c);
    const __m256bh h = _mm512_cvtneps_pbh(v);
    const __m512 hf = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(reinterpret_cast<__m256i>(h)), 16));
    const __m256bh l = _mm512_cvtneps_pbh(_mm512_sub_ps(v, hf));
    _mm256_mask_storeu_epi16(xh + c, m, reinterpret_cast<__m256i>(h));
    _mm256_mask_storeu_epi16(xl + c, m, reinterpret_cast<__m256i>(l));
  }
}

}  // namespace

void matmul_bf16_gemv(const MatmulArgs& a) {
  thread_local std::vector<uint16_t> xs;
  xs.resize(static_cast<size_t>(2 * a.cols));
  uint16_t* xh = xs.data();
  uint16_t* xl = xh + a.cols;
  split_x(a.x, a.cols, xh, xl);
  const auto* w = static_cast<const uint16_t*>(a.w);
  const int64_t n_blocks = (a.rows + 3) / 4;
  ThreadPool::global().parallel_for(
      n_blocks,
      [&](int64_t b0, int64_t b1) {
        int64_t r = b0 * 4;
        const int64_t r1 = std::min(a.rows, b1 * 4);
        for (; r + 4 <= r1; r += 4) gemv_tile<4>(w + r * a.cols, a.cols, xh, xl, a.y + r);
        for (; r < r1; ++r) gemv_tile<1>(w + r * a.cols, a.cols, xh, xl, a.y + r);
      },
      std::max<int64_t>(1, (int64_t{1} << 18) / (4 * a.cols)));
}

void matmul_bf16_gemm(const MatmulArgs& a) {
  if (a.rows <= 0 || a.n <= 0) return;
  if (a.cols <= 0) {
    std::fill(a.y, a.y + a.n * a.rows, 0.0f);
    return;
  }
  const int64_t P = (a.cols + 1) / 2, n_tb = (a.n + kT - 1) / kT, n_kb = (P + kKc - 1) / kKc, Q = (a.rows + 15) / 16;
  const int64_t block_u32 = n_kb * kT * kKc * 2;  // one token block of packed X
  // The caller's buffer, named here: a lambda running on a worker would see the worker's own thread_local.
  thread_local AlignedU32 xbuf;
  uint32_t* xp = xbuf.reserve(static_cast<size_t>(n_tb * block_u32));
  ThreadPool& pool = ThreadPool::global();
  pool.parallel_for(
      n_tb,
      [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b)
          bf16_pack::pack_x(a.x + b * kT * a.cols, a.cols, std::min<int64_t>(kT, a.n - b * kT), xp + b * block_u32);
      },
      std::max<int64_t>(1, (int64_t{1} << 15) / (kT * a.cols)));
  // At least 2 panels (one full tile) and ~1M multiply-adds per task.
  const int64_t min_panels = std::max<int64_t>(2, (int64_t{1} << 20) / (16 * a.cols * a.n));
  pool.parallel_for(Q, [&](int64_t q0, int64_t q1) { gemm_panels(a, xp, P, q0, q1); }, min_panels);
}

#else
void matmul_bf16_gemv(const MatmulArgs&) {
  std::fprintf(stderr, "lmlab: matmul_bf16_gemv called on a machine without AVX512_BF16\n");
  std::abort();
}
void matmul_bf16_gemm(const MatmulArgs&) {
  std::fprintf(stderr, "lmlab: matmul_bf16_gemm called on a machine without AVX512_BF16\n");
  std::abort();
}
#endif  // LMLAB_X86

}  // namespace lmlab::kernels::cpu
