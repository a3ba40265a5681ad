// bf16 / f16 weights and f32 activations, both quantized to 14-bit integers, on vpdpwssd (see matmul_half_i16.h for the arithmetic and its error).
//
// vpdpwssd: acc.i32[i] += a.i16[2i] * b.i16[2i] + a.i16[2i+1] * b.i16[2i+1], so a lane takes a pair of consecutive
// columns, as vdpbf16ps does, and the layouts are the bf16 GEMM's (matmul_bf16.cpp) with int16 in place of bf16:
//   X: quantized once per call (int16 and a scale per token and 32 columns) straight into blocks of
//     kT tokens and kKc pairs as [kT][kKc] u32 pairs followed by [kT][kKc / 16] scales: a fixed token stride, so
//     the tile addresses its tokens by constant offsets (with the row stride in a register GCC kept a pointer per
//     token and spilled accumulators).
//   W: per thread, per block of kMc panels of 16 rows x kKc pairs: [panel][pair][16] u32 (row i in lane i), each
//     row scaled by its own wd over the block's columns, quantized and transposed in registers.
// Micro-kernel: 2 panels (32 rows) x kT = 6 tokens, 12 int32 accumulators; per pair 2 W loads, 6 broadcasts,
// 12 vpdpwssd. After every 16 pairs (one activation block) the accumulators join f32 partial sums (registers too)
// scaled by the block's xd; at the end of the reduction block the partials go into Y scaled by wd. Threads split the rows in
// whole tiles.
#include "kernels/cpu/matmul_half_i16.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <utility>

#include "kernels/cpu/bf16_pack.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/matmul_bf16.h"
#include "kernels/cpu/simd.h"
#include "util/thread_pool.h"

namespace lmlab::kernels::cpu {

namespace {
// Columns per activation block (one xd each) and the largest level of either operand: a block's int32 sum of
// kXCols products stays under 2^31 even with every value at its largest. Blocks of 64 with W at 4095 (half the
// scale operations) measured slower: 283-293 vs 325-327 GFLOP/s on one core.
constexpr int64_t kXCols = 32;
constexpr int32_t kQmax = 8191;  // 14 bits
static_assert(kXCols * int64_t{kQmax} * kQmax < (int64_t{1} << 31));
}  // namespace

bool half_i16_gemm_available() { return active_isa() == Isa::avx512 && has_avx512_vnni(); }

bool matmul_uses_half_i16(const MatmulArgs& a) {
  return a.int16_prefill && (a.type == WeightType::bf16 || a.type == WeightType::f16) && a.n >= kBf16GemmMinTokens &&
         a.cols % kXCols == 0 && half_i16_gemm_available();
}

#if LMLAB_X86
namespace {

using bf16_pack::AlignedU32;
using bf16_pack::rows_mask;

// The micro tile: kR panels (32 rows) x kT tokens, 12 int32 accumulators and their 12 f32 partial sums in registers.
// Per pair kR W loads and kT broadcasts, each feeding kR vpdpwssd. One core, 2048 x 2048 x 512
// (BM_gemm_bf16_i16_1t, best of 6): 354-360 GFLOP/s; 3 x 8 with the partials in L1 345-357, 3 x 4 340-347; 3 x 8
// before the activation block's 16 pairs were unrolled 319, 2 x 12 with the broadcasts inside vpdpwssd's memory
// operand 256-272; the exact GEMM 186-193.
constexpr int kR = 2;
constexpr int kT = 6;
constexpr int64_t kPairsPerBlock = kXCols / 2;  // pairs per activation block (one xd)
constexpr int64_t kKc = 128;                        // pairs per reduction block (256 columns: one wd per row)
constexpr int64_t kMc = 32;  // panels per packed W block (16 tiles): 32 * 16 * 128 * 4 = 256 KiB (L2)

// acc + dot(w, x). Through the intrinsic GCC 12 copied every accumulator to and from the stack around each
// vpdpwssd (its tied destination): 0.73x the exact GEMM end to end.
LMLAB_TARGET_AVX512_VNNI inline __m512i dpwssd(__m512i acc, __m512i w, __m512i x) {
  asm("vpdpwssd %2, %1, %0" : "+v"(acc) : "v"(w), "v"(x));
  return acc;
}

// kQmax / amax, the factor that maps a block's largest magnitude to kQmax; 0 where that is not a finite number (amax
// 0, infinite or NaN, or so small that the quotient overflows: such a block's levels are all 0).
float level_factor(float amax) {
  const float f = static_cast<float>(kQmax) / amax;
  return amax > 0.0f && std::isfinite(f) ? f : 0.0f;
}

// Largest |w| over n bf16 / f16 values (n a multiple of 32), exactly: their magnitudes order as their bits (a NaN's
// bits exceed infinity's, so a NaN or infinite weight gives a non-finite block scale and its row's outputs become
// NaN, not finite noise).
template <WeightType WT>
LMLAB_TARGET_AVX512_VNNI float half_amax(const uint16_t* w, int64_t n) {
  __m512i m = _mm512_setzero_si512();
  const __m512i abs = _mm512_set1_epi16(0x7fff);
  for (int64_t c = 0; c < n; c += 32) m = _mm512_max_epu16(m, _mm512_and_si512(_mm512_loadu_si512(w + c), abs));
  const __m512i m32 = _mm512_max_epu32(_mm512_and_si512(m, _mm512_set1_epi32(0xffff)), _mm512_srli_epi32(m, 16));
  const auto bits = static_cast<uint32_t>(_mm512_reduce_max_epu32(m32));
  if constexpr (WT == WeightType::f16) return _cvtsh_ss(static_cast<unsigned short>(bits));
  const uint32_t f32_bits = bits << 16;
  float f;
  std::memcpy(&f, &f32_bits, sizeof f);
  return f;
}

// 32 bf16 / f16 values (16 column pairs of one row) -> their levels nearbyint(w * inv) as 16 int16 pairs, lower
// column in the low half.
template <WeightType WT>
LMLAB_TARGET_AVX512_VNNI __m512i quantize_pairs(__m512i v, __m512 inv) {
  if constexpr (WT == WeightType::bf16) {
    // Widen each half to f32 exactly (bf16 = f32's high half) and keep the pairs where they are.
    const __m512i lo16 = _mm512_set1_epi32(0xffff);
    const __m512i qe = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_castsi512_ps(_mm512_slli_epi32(v, 16)), inv));
    const __m512i qo = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_castsi512_ps(_mm512_andnot_si512(lo16, v)), inv));
    return _mm512_or_si512(_mm512_and_si512(qe, lo16), _mm512_slli_epi32(qo, 16));
  } else {
    // Columns 0-15 and 16-31 widened (exactly) in order; |q| <= kQmax, so the narrowing is exact (a level factor
    // of 0 gives 0 for any finite value).
    const __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_cvtph_ps(_mm512_castsi512_si256(v)), inv));
    const __m512i q1 = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_cvtph_ps(_mm512_extracti64x4_epi64(v, 1)), inv));
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi32_epi16(q0)), _mm512_cvtepi32_epi16(q1), 1);
  }
}

// Panels [q0, q0 + nq) of W (bf16 / f16 [rows, cols]), pairs [p0, p0 + np) -> out [nq][np][16] int16 pairs and
// wd [nq][16] (rows past the last: 0). np is a multiple of 16 (cols of 32).
template <WeightType WT>
LMLAB_TARGET_AVX512_VNNI void pack_w(const uint16_t* w, int64_t rows, int64_t cols, int64_t q0, int64_t nq,
                                     int64_t p0, int64_t np, uint32_t* out, float* wd) {
  for (int64_t q = 0; q < nq; ++q) {
    const int64_t r0 = (q0 + q) * 16, nr = std::min<int64_t>(16, rows - r0);
    const uint16_t* base = w + r0 * cols + 2 * p0;
    __m512 inv[16];
    for (int64_t i = 0; i < 16; ++i) {
      const float amax = i < nr ? half_amax<WT>(base + i * cols, 2 * np) : 0.0f;
      // amax == 0: an all-zero row block (wd 0); infinite or NaN: wd non-finite, the levels 0.
      inv[i] = _mm512_set1_ps(level_factor(amax));
      wd[q * 16 + i] = amax > 0.0f ? amax / static_cast<float>(kQmax) : std::isnan(amax) ? amax : 0.0f;
    }
    uint32_t* o = out + q * np * 16;
    for (int64_t p = 0; p < np; p += 16, o += 256) {
      __m512i r[16];
      for (int i = 0; i < 16; ++i)
        r[i] = i < nr ? quantize_pairs<WT>(_mm512_loadu_si512(base + i * cols + 2 * p), inv[i]) : _mm512_setzero_si512();
      for (int64_t i = 0; i < std::min<int64_t>(16, rows - r0 - 16) && q + 1 < nq; ++i)
        _mm_prefetch(reinterpret_cast<const char*>(base + (16 + i) * cols + 2 * p), _MM_HINT_T1);
      simd::transpose16(r);
      for (int64_t j = 0; j < 16; ++j) _mm512_store_si512(o + j * 16, r[j]);
    }
  }
}

constexpr int64_t kSub = kKc / kPairsPerBlock;  // activation blocks per reduction block
constexpr int64_t kXBlock = kT * kKc + kT * kSub;  // u32s of one packed X block: pairs, then scales

// X rows [t0, t1) of [n, cols] (cols a multiple of kXCols) -> their packed blocks [n_tb][n_kb][kXBlock], quantized
// per token and block of kXCols: xd = amax / kQmax, xq = nearbyint(x * kQmax / amax) (cvtps rounds to nearest
// even). A block holding an infinity or NaN gets xd = NaN and zero levels, so the token's outputs become NaN.
// Tokens past n in the last block stay unset: no tile reads them.
LMLAB_TARGET_AVX512_VNNI void pack_x(const float* x, int64_t cols, int64_t t0, int64_t t1, uint32_t* out) {
  const int64_t P = cols / 2, n_kb = (P + kKc - 1) / kKc;
  const __m512 sign = _mm512_set1_ps(-0.0f);
  for (int64_t t = t0; t < t1; ++t)
    for (int64_t c = 0; c < cols; c += kXCols) {
      const float* xr = x + t * cols + c;
      __m512 v[kXCols / 16], m = _mm512_setzero_ps();
      __mmask16 bad = 0;
      for (int i = 0; i < kXCols / 16; ++i) {
        v[i] = _mm512_loadu_ps(xr + 16 * i);
        m = _mm512_max_ps(m, _mm512_andnot_ps(sign, v[i]));
        bad |= _mm512_fpclass_ps_mask(v[i], 0x99);  // QNaN, SNaN, +inf, -inf
      }
      const float amax = _mm512_reduce_max_ps(m);
      const __m512 inv = _mm512_set1_ps(bad == 0 ? level_factor(amax) : 0.0f);
      const int64_t p = c / 2, kb = p / kKc;
      uint32_t* o = out + (t / kT * n_kb + kb) * kXBlock;
      for (int i = 0; i < kXCols / 32; ++i) {
        // |q| <= kQmax: the truncating narrow to int16 is exact; 16 columns per half, 32 per 16 pairs.
        const __m256i lo = _mm512_cvtepi32_epi16(_mm512_cvtps_epi32(_mm512_mul_ps(v[2 * i], inv)));
        const __m256i hi = _mm512_cvtepi32_epi16(_mm512_cvtps_epi32(_mm512_mul_ps(v[2 * i + 1], inv)));
        _mm512_storeu_si512(o + t % kT * kKc + p % kKc + 16 * i,
                            _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1));
      }
      reinterpret_cast<float*>(o + kT * kKc)[t % kT * kSub + p % kKc / kPairsPerBlock] =
          bad ? std::numeric_limits<float>::quiet_NaN() : amax / static_cast<float>(kQmax);
    }
}

// R panels x T tokens over np pairs of one reduction block. w: [R][np][16] (panel stride np * 16); wd: [R][16];
// x: a packed X block (kXBlock); y: [T, ldy] at the tile's first row; rows: the output rows from the tile's first
// (those past 16 R are other tiles'); accumulate: add into y.
template <int R, int T>
LMLAB_TARGET_AVX512_VNNI void tile(const uint32_t* w, int64_t np, const float* wd, const uint32_t* x, float* y,
                                   int64_t ldy, int64_t rows, bool accumulate) {
  const float* xd = reinterpret_cast<const float*>(x + kT * kKc);
  __mmask16 m[R];
  for (int i = 0; i < R; ++i) m[i] = rows_mask(rows - 16 * i);
  __m512 part[T][R];
  for (int64_t s = 0; s < np; s += kPairsPerBlock) {
    __m512i acc[R][T];
#pragma GCC unroll 6
    for (int j = 0; j < T; ++j)
#pragma GCC unroll 2
      for (int i = 0; i < R; ++i) acc[i][j] = _mm512_setzero_si512();
#pragma GCC unroll 16
    for (int64_t p = s; p < s + kPairsPerBlock; ++p) {
      __m512i wv[R];
#pragma GCC unroll 2
      for (int i = 0; i < R; ++i) wv[i] = _mm512_load_si512(w + (i * np + p) * 16);
#pragma GCC unroll 6
      for (int j = 0; j < T; ++j) {
        const __m512i xv = _mm512_set1_epi32(static_cast<int>(x[j * kKc + p]));
#pragma GCC unroll 2
        for (int i = 0; i < R; ++i) acc[i][j] = dpwssd(acc[i][j], wv[i], xv);
      }
    }
    const int64_t blk = s / kPairsPerBlock;
#pragma GCC unroll 6
    for (int j = 0; j < T; ++j) {
      const __m512 d = _mm512_set1_ps(xd[j * kSub + blk]);
#pragma GCC unroll 2
      for (int i = 0; i < R; ++i) {
        const __m512 v = _mm512_cvtepi32_ps(acc[i][j]);
        part[j][i] = s == 0 ? _mm512_mul_ps(v, d) : _mm512_fmadd_ps(v, d, part[j][i]);
      }
    }
  }
#pragma GCC unroll 2
  for (int i = 0; i < R; ++i) {
    const __m512 s = _mm512_loadu_ps(wd + 16 * i);
#pragma GCC unroll 6
    for (int j = 0; j < T; ++j) {
      float* yo = y + j * ldy + 16 * i;
      const __m512 base = accumulate ? _mm512_maskz_loadu_ps(m[i], yo) : _mm512_setzero_ps();
      _mm512_mask_storeu_ps(yo, m[i], _mm512_fmadd_ps(part[j][i], s, base));
    }
  }
}

using TileFn = void (*)(const uint32_t*, int64_t, const float*, const uint32_t*, float*, int64_t, int64_t, bool);

template <int R, int... Ts>
constexpr std::array<TileFn, sizeof...(Ts)> tile_table(std::integer_sequence<int, Ts...>) {
  return {&tile<R, Ts + 1>...};
}
// kTiles[R - 1][T - 1]
const std::array<TileFn, kT> kTiles[kR] = {tile_table<1>(std::make_integer_sequence<int, kT>{}),
                                           tile_table<2>(std::make_integer_sequence<int, kT>{})};

// Panels [q0, q1) of the output for all tokens; xp: the packed X.
void gemm_panels(const MatmulArgs& a, const uint32_t* xp, int64_t q0, int64_t q1) {
  thread_local AlignedU32 wbuf;
  const int64_t P = a.cols / 2, nm_max = std::min(kMc, q1 - q0);
  uint32_t* wb = wbuf.reserve(static_cast<size_t>(nm_max * std::min(kKc, P) * 16 + nm_max * 16));
  float* wd = reinterpret_cast<float*>(wb + nm_max * std::min(kKc, P) * 16);
  const auto* w = static_cast<const uint16_t*>(a.w);
  const int64_t n_kb = (P + kKc - 1) / kKc;
  for (int64_t p0 = 0; p0 < P; p0 += kKc) {
    const int64_t np = std::min(kKc, P - p0);
    for (int64_t m0 = q0; m0 < q1; m0 += kMc) {
      const int64_t nm = std::min(kMc, q1 - m0);
      if (a.type == WeightType::f16) pack_w<WeightType::f16>(w, a.rows, a.cols, m0, nm, p0, np, wb, wd);
      else pack_w<WeightType::bf16>(w, a.rows, a.cols, m0, nm, p0, np, wb, wd);
      for (int64_t t0 = 0; t0 < a.n; t0 += kT) {
        const int64_t nt = std::min<int64_t>(kT, a.n - t0);
        for (int64_t q = 0; q < nm; q += kR) {
          const int64_t R = std::min<int64_t>(kR, nm - q), r0 = (m0 + q) * 16;
          kTiles[R - 1][nt - 1](wb + q * np * 16, np, wd + q * 16, xp + (t0 / kT * n_kb + p0 / kKc) * kXBlock,
                                a.y + t0 * a.rows + r0, a.rows, a.rows - r0, p0 > 0);
        }
      }
    }
  }
}

}  // namespace

void matmul_half_i16(const MatmulArgs& a) {
  if (a.rows <= 0 || a.n <= 0) return;
  if (a.cols <= 0) {
    std::fill(a.y, a.y + a.n * a.rows, 0.0f);
    return;
  }
  // The caller's buffer, named here: a lambda running on a worker would see the worker's own thread_local.
  thread_local AlignedU32 packed;
  const int64_t n_kb = (a.cols / 2 + kKc - 1) / kKc, n_tb = (a.n + kT - 1) / kT;
  uint32_t* xp = packed.reserve(static_cast<size_t>(n_tb * n_kb * kXBlock));
  ThreadPool& pool = ThreadPool::global();
  pool.parallel_for(
      n_tb, [&](int64_t b0, int64_t b1) { pack_x(a.x, a.cols, b0 * kT, std::min(a.n, b1 * kT), xp); },
      std::max<int64_t>(1, (int64_t{1} << 15) / (kT * a.cols)));
  // Threads take whole tiles (kR panels): a chunk of 16 panels left a 1-panel tile, 3% of a 0.9B prefill.
  const int64_t Q = (a.rows + 15) / 16, groups = (Q + kR - 1) / kR;
  const int64_t min_groups = std::max<int64_t>(1, (int64_t{1} << 20) / (kR * 16 * a.cols * a.n));  // ~1M MACs
  pool.parallel_for(
      groups, [&](int64_t g0, int64_t g1) { gemm_panels(a, xp, g0 * kR, std::min(Q, g1 * kR)); }, min_groups);
}

#else
void matmul_half_i16(const MatmulArgs&) {
  std::fprintf(stderr, "lmlab: matmul_half_i16 called on a machine without AVX-512 VNNI\n");
  std::abort();
}
#endif  // LMLAB_X86

}  // namespace lmlab::kernels::cpu
