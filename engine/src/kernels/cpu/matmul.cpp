// Optimised matmul Y[n, rows] = X[n, cols] . W[rows, cols]^T with f32 / f16 / bf16 weights, f32 activations
// and f32 accumulation (see kernels.h). Threads split the output rows in blocks of 4.
//
// n == 1 (decode) is memory-bound: each weight row is streamed exactly once, 4 rows side by side sharing the
// x loads, 2 accumulators per row; bf16 widens to f32 by a 16-bit shift, f16 by vcvtph2ps (both exact).
// n > 1 (prefill) uses a 4-row x T-token register tile (T = 4 on AVX-512, 2 on AVX2): every weight vector
// loaded and widened once feeds T tokens. The reduction dimension is blocked by kKc columns and the tokens by
// kTb so that a [kTb, kKc] panel of X stays in L2 while the row blocks of a thread's chunk pass over it;
// partial sums of later column blocks are added into Y. 4 row sums of one token are stored as one vector
// (Y is [n, rows], so they are contiguous).
// bf16 weights with n == 1 or n >= kBf16GemmMinTokens go to the vdpbf16ps GEMV / GEMM of matmul_bf16.cpp where the
// CPU has AVX512_BF16 (large matrices' prefill, MatmulArgs::int16_prefill, to matmul_half_i16.cpp on VNNI); the f32
// FMA tiles below serve every other case.
#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "kernels/cpu/isa.h"
#include "kernels/cpu/matmul_bf16.h"
#include "kernels/cpu/matmul_half_i16.h"
#include "kernels/cpu/simd.h"
#include "kernels/kernels.h"
#include "util/half.h"
#include "util/thread_pool.h"

namespace lmlab::kernels::cpu {

namespace {

template <WeightType WT>
using Elem = std::conditional_t<WT == WeightType::f32, float, uint16_t>;

constexpr int64_t kKc = 1024;  // columns per reduction block: a 4-row weight slice is <= 16 KiB as f32
constexpr int64_t kTb = 64;    // tokens per block: a [kTb, kKc] f32 panel of X is 256 KiB (fits L2)

// Work per parallel chunk: at least ~64K multiply-adds so the pool's hand-off cost stays small.
// At least ~256K weight elements per task: waking a worker costs more than a smaller slice of a matvec.
int64_t min_row_blocks(int64_t cols, int64_t n) { return std::max<int64_t>(1, (int64_t{1} << 18) / std::max<int64_t>(1, 4 * cols * n)); }

// ------------------------------------------------------------------------------------------- scalar

template <WeightType WT>
inline float to_f32(Elem<WT> v) {
  if constexpr (WT == WeightType::f32) return v;
  else if constexpr (WT == WeightType::f16) return f16_to_f32(v);
  else return bf16_to_f32(v);
}

// w[0, n) . x[0, n) with w widened on the fly; 8 independent partial sums (lets the compiler use SSE lanes).
template <WeightType WT>
float dot_scalar(const Elem<WT>* w, const float* x, int64_t n) {
  float acc[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) acc[j] += to_f32<WT>(w[i + j]) * x[i + j];
  for (; i < n; ++i) acc[0] += to_f32<WT>(w[i]) * x[i];
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

// Rows [r0, r1). n == 1: one fused widen-and-dot pass per row. n > 1: each weight row is widened once into a
// f32 buffer [cols], then dotted with every token.
template <WeightType WT>
void rows_scalar(const MatmulArgs& a, int64_t r0, int64_t r1) {
  const auto* w = static_cast<const Elem<WT>*>(a.w);
  if (a.n == 1 || WT == WeightType::f32) {
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t t = 0; t < a.n; ++t) a.y[t * a.rows + r] = dot_scalar<WT>(w + r * a.cols, a.x + t * a.cols, a.cols);
    return;
  }
  std::vector<float> row(static_cast<size_t>(a.cols));
  for (int64_t r = r0; r < r1; ++r) {
    for (int64_t c = 0; c < a.cols; ++c) row[c] = to_f32<WT>(w[r * a.cols + c]);
    for (int64_t t = 0; t < a.n; ++t) a.y[t * a.rows + r] = dot_scalar<WeightType::f32>(row.data(), a.x + t * a.cols, a.cols);
  }
}

#if LMLAB_X86
// ------------------------------------------------------------------------------------------- AVX-512

template <WeightType WT>
LMLAB_TARGET_AVX512 inline __m512 load16(const Elem<WT>* p) {
  if constexpr (WT == WeightType::f32) {
    return _mm512_loadu_ps(p);
  } else {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    if constexpr (WT == WeightType::f16) return _mm512_cvtph_ps(h);
    else return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
}

// Masked load: lanes outside m read nothing and are 0.
template <WeightType WT>
LMLAB_TARGET_AVX512 inline __m512 load16(const Elem<WT>* p, __mmask16 m) {
  if constexpr (WT == WeightType::f32) {
    return _mm512_maskz_loadu_ps(m, p);
  } else {
    const __m256i h = _mm256_maskz_loadu_epi16(m, p);
    if constexpr (WT == WeightType::f16) return _mm512_cvtph_ps(h);
    else return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
}

// y[0, R) for one token: w [R, cols] (row stride cols) against x [cols]; two accumulators per row.
template <WeightType WT, int R>
LMLAB_TARGET_AVX512 void gemv_tile_avx512(const Elem<WT>* w, int64_t cols, const float* x, float* y) {
  __m512 acc0[R], acc1[R];
#pragma GCC unroll 4
  for (int i = 0; i < R; ++i) acc0[i] = acc1[i] = _mm512_setzero_ps();
  int64_t c = 0;
  for (; c + 32 <= cols; c += 32) {
    const __m512 x0 = _mm512_loadu_ps(x + c), x1 = _mm512_loadu_ps(x + c + 16);
#pragma GCC unroll 4
    for (int i = 0; i < R; ++i) {
      acc0[i] = _mm512_fmadd_ps(load16<WT>(w + i * cols + c), x0, acc0[i]);
      acc1[i] = _mm512_fmadd_ps(load16<WT>(w + i * cols + c + 16), x1, acc1[i]);
    }
  }
  for (; c < cols; c += 16) {
    const __mmask16 m = simd::tail_mask16(std::min<int64_t>(16, cols - c));
    const __m512 x0 = _mm512_maskz_loadu_ps(m, x + c);
#pragma GCC unroll 4
    for (int i = 0; i < R; ++i) acc0[i] = _mm512_fmadd_ps(load16<WT>(w + i * cols + c, m), x0, acc0[i]);
  }
  if constexpr (R == 4) {
    _mm_storeu_ps(y, simd::hsum4(_mm512_add_ps(acc0[0], acc1[0]), _mm512_add_ps(acc0[1], acc1[1]),
                                 _mm512_add_ps(acc0[2], acc1[2]), _mm512_add_ps(acc0[3], acc1[3])));
  } else {
    for (int i = 0; i < R; ++i) y[i] = _mm512_reduce_add_ps(_mm512_add_ps(acc0[i], acc1[i]));
  }
}

// R rows x T tokens over columns [k0, k1): w [R, ldw], x [T, ldx], y [T, ldy];
// y[t * ldy + i] (+)= sum_k w[i * ldw + k] * x[t * ldx + k].
template <WeightType WT, int R, int T>
LMLAB_TARGET_AVX512 void gemm_tile_avx512(const Elem<WT>* w, int64_t ldw, const float* x, int64_t ldx, int64_t k0,
                                          int64_t k1, float* y, int64_t ldy, bool accumulate) {
  __m512 acc[R][T];
#pragma GCC unroll 4
  for (int i = 0; i < R; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < T; ++j) acc[i][j] = _mm512_setzero_ps();
  int64_t k = k0;
  for (; k + 16 <= k1; k += 16) {
    __m512 wv[R];
#pragma GCC unroll 4
    for (int i = 0; i < R; ++i) wv[i] = load16<WT>(w + i * ldw + k);
#pragma GCC unroll 4
    for (int j = 0; j < T; ++j) {
      const __m512 xv = _mm512_loadu_ps(x + j * ldx + k);
#pragma GCC unroll 4
      for (int i = 0; i < R; ++i) acc[i][j] = _mm512_fmadd_ps(wv[i], xv, acc[i][j]);
    }
  }
  if (k < k1) {
    const __mmask16 m = simd::tail_mask16(k1 - k);
    __m512 wv[R];
#pragma GCC unroll 4
    for (int i = 0; i < R; ++i) wv[i] = load16<WT>(w + i * ldw + k, m);
#pragma GCC unroll 4
    for (int j = 0; j < T; ++j) {
      const __m512 xv = _mm512_maskz_loadu_ps(m, x + j * ldx + k);
#pragma GCC unroll 4
      for (int i = 0; i < R; ++i) acc[i][j] = _mm512_fmadd_ps(wv[i], xv, acc[i][j]);
    }
  }
#pragma GCC unroll 4
  for (int j = 0; j < T; ++j) {
    float* yj = y + j * ldy;
    if constexpr (R == 4) {
      __m128 s = simd::hsum4(acc[0][j], acc[1][j], acc[2][j], acc[3][j]);
      if (accumulate) s = _mm_add_ps(s, _mm_loadu_ps(yj));
      _mm_storeu_ps(yj, s);
    } else {
      for (int i = 0; i < R; ++i) {
        const float s = _mm512_reduce_add_ps(acc[i][j]);
        yj[i] = accumulate ? yj[i] + s : s;
      }
    }
  }
}

template <WeightType WT, int R>
LMLAB_TARGET_AVX512 void gemm_tokens_avx512(const Elem<WT>* w, int64_t ldw, const float* x, int64_t ldx,
                                            int64_t n_tok, int64_t k0, int64_t k1, float* y, int64_t ldy,
                                            bool accumulate) {
  int64_t t = 0;
  for (; t + 4 <= n_tok; t += 4) gemm_tile_avx512<WT, R, 4>(w, ldw, x + t * ldx, ldx, k0, k1, y + t * ldy, ldy, accumulate);
  switch (n_tok - t) {
    case 3: gemm_tile_avx512<WT, R, 3>(w, ldw, x + t * ldx, ldx, k0, k1, y + t * ldy, ldy, accumulate); break;
    case 2: gemm_tile_avx512<WT, R, 2>(w, ldw, x + t * ldx, ldx, k0, k1, y + t * ldy, ldy, accumulate); break;
    case 1: gemm_tile_avx512<WT, R, 1>(w, ldw, x + t * ldx, ldx, k0, k1, y + t * ldy, ldy, accumulate); break;
    default: break;
  }
}

template <WeightType WT>
LMLAB_TARGET_AVX512 void rows_avx512(const MatmulArgs& a, int64_t r0, int64_t r1) {
  const auto* w = static_cast<const Elem<WT>*>(a.w);
  if (a.n == 1) {
    int64_t r = r0;
    for (; r + 4 <= r1; r += 4) gemv_tile_avx512<WT, 4>(w + r * a.cols, a.cols, a.x, a.y + r);
    for (; r < r1; ++r) gemv_tile_avx512<WT, 1>(w + r * a.cols, a.cols, a.x, a.y + r);
    return;
  }
  for (int64_t k0 = 0; k0 < a.cols; k0 += kKc) {
    const int64_t k1 = std::min(a.cols, k0 + kKc);
    for (int64_t t0 = 0; t0 < a.n; t0 += kTb) {
      const int64_t nt = std::min(kTb, a.n - t0);
      const float* x = a.x + t0 * a.cols;
      float* y = a.y + t0 * a.rows;
      int64_t r = r0;
      for (; r + 4 <= r1; r += 4)
        gemm_tokens_avx512<WT, 4>(w + r * a.cols, a.cols, x, a.cols, nt, k0, k1, y + r, a.rows, k0 > 0);
      for (; r < r1; ++r)
        gemm_tokens_avx512<WT, 1>(w + r * a.cols, a.cols, x, a.cols, nt, k0, k1, y + r, a.rows, k0 > 0);
    }
  }
}

// ------------------------------------------------------------------------------------------- AVX2

template <WeightType WT>
LMLAB_TARGET_AVX2 inline __m256 load8(const Elem<WT>* p) {
  if constexpr (WT == WeightType::f32) {
    return _mm256_loadu_ps(p);
  } else {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    if constexpr (WT == WeightType::f16) return _mm256_cvtph_ps(h);
    else return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
}

// AVX2 has no 16-bit masked loads: column tails (cols % 8) are added in scalar after the vector part.
template <WeightType WT>
inline float tail_dot(const Elem<WT>* w, const float* x, int64_t k0, int64_t k1) {
  float s = 0.0f;
  for (int64_t k = k0; k < k1; ++k) s += to_f32<WT>(w[k]) * x[k];
  return s;
}

template <WeightType WT, int R>
LMLAB_TARGET_AVX2 void gemv_tile_avx2(const Elem<WT>* w, int64_t cols, const float* x, float* y) {
  __m256 acc0[R], acc1[R];
#pragma GCC unroll 4
  for (int i = 0; i < R; ++i) acc0[i] = acc1[i] = _mm256_setzero_ps();
  int64_t c = 0;
  for (; c + 16 <= cols; c += 16) {
    const __m256 x0 = _mm256_loadu_ps(x + c), x1 = _mm256_loadu_ps(x + c + 8);
#pragma GCC unroll 4
    for (int i = 0; i < R; ++i) {
      acc0[i] = _mm256_fmadd_ps(load8<WT>(w + i * cols + c), x0, acc0[i]);
      acc1[i] = _mm256_fmadd_ps(load8<WT>(w + i * cols + c + 8), x1, acc1[i]);
    }
  }
  if (c + 8 <= cols) {
    const __m256 x0 = _mm256_loadu_ps(x + c);
#pragma GCC unroll 4
    for (int i = 0; i < R; ++i) acc0[i] = _mm256_fmadd_ps(load8<WT>(w + i * cols + c), x0, acc0[i]);
    c += 8;
  }
  if constexpr (R == 4) {
    __m128 s = simd::hsum4(_mm256_add_ps(acc0[0], acc1[0]), _mm256_add_ps(acc0[1], acc1[1]),
                           _mm256_add_ps(acc0[2], acc1[2]), _mm256_add_ps(acc0[3], acc1[3]));
    if (c < cols) {
      const __m128 tail = _mm_setr_ps(tail_dot<WT>(w, x, c, cols), tail_dot<WT>(w + cols, x, c, cols),
                                      tail_dot<WT>(w + 2 * cols, x, c, cols), tail_dot<WT>(w + 3 * cols, x, c, cols));
      s = _mm_add_ps(s, tail);
    }
    _mm_storeu_ps(y, s);
  } else {
    for (int i = 0; i < R; ++i)
      y[i] = simd::hsum8(_mm256_add_ps(acc0[i], acc1[i])) + tail_dot<WT>(w + i * cols, x, c, cols);
  }
}

template <WeightType WT, int R, int T>
LMLAB_TARGET_AVX2 void gemm_tile_avx2(const Elem<WT>* w, int64_t ldw, const float* x, int64_t ldx, int64_t k0,
                                      int64_t k1, float* y, int64_t ldy, bool accumulate) {
  __m256 acc[R][T];
#pragma GCC unroll 4
  for (int i = 0; i < R; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < T; ++j) acc[i][j] = _mm256_setzero_ps();
  int64_t k = k0;
  for (; k + 8 <= k1; k += 8) {
    __m256 xv[T];
#pragma GCC unroll 4
    for (int j = 0; j < T; ++j) xv[j] = _mm256_loadu_ps(x + j * ldx + k);
#pragma GCC unroll 4
    for (int i = 0; i < R; ++i) {
      const __m256 wv = load8<WT>(w + i * ldw + k);
#pragma GCC unroll 4
      for (int j = 0; j < T; ++j) acc[i][j] = _mm256_fmadd_ps(wv, xv[j], acc[i][j]);
    }
  }
#pragma GCC unroll 4
  for (int j = 0; j < T; ++j) {
    float* yj = y + j * ldy;
    const float* xj = x + j * ldx;
    if constexpr (R == 4) {
      __m128 s = simd::hsum4(acc[0][j], acc[1][j], acc[2][j], acc[3][j]);
      if (k < k1)
        s = _mm_add_ps(s, _mm_setr_ps(tail_dot<WT>(w, xj, k, k1), tail_dot<WT>(w + ldw, xj, k, k1),
                                      tail_dot<WT>(w + 2 * ldw, xj, k, k1), tail_dot<WT>(w + 3 * ldw, xj, k, k1)));
      if (accumulate) s = _mm_add_ps(s, _mm_loadu_ps(yj));
      _mm_storeu_ps(yj, s);
    } else {
      for (int i = 0; i < R; ++i) {
        const float s = simd::hsum8(acc[i][j]) + tail_dot<WT>(w + i * ldw, xj, k, k1);
        yj[i] = accumulate ? yj[i] + s : s;
      }
    }
  }
}

template <WeightType WT>
LMLAB_TARGET_AVX2 void rows_avx2(const MatmulArgs& a, int64_t r0, int64_t r1) {
  const auto* w = static_cast<const Elem<WT>*>(a.w);
  if (a.n == 1) {
    int64_t r = r0;
    for (; r + 4 <= r1; r += 4) gemv_tile_avx2<WT, 4>(w + r * a.cols, a.cols, a.x, a.y + r);
    for (; r < r1; ++r) gemv_tile_avx2<WT, 1>(w + r * a.cols, a.cols, a.x, a.y + r);
    return;
  }
  for (int64_t k0 = 0; k0 < a.cols; k0 += kKc) {
    const int64_t k1 = std::min(a.cols, k0 + kKc);
    for (int64_t t0 = 0; t0 < a.n; t0 += kTb) {
      const int64_t nt = std::min(kTb, a.n - t0);
      const float* x = a.x + t0 * a.cols;
      float* y = a.y + t0 * a.rows;
      for (int64_t r = r0; r < r1;) {
        const bool four = r + 4 <= r1;
        const Elem<WT>* wr = w + r * a.cols;
        int64_t t = 0;
        for (; t + 2 <= nt; t += 2) {
          if (four) gemm_tile_avx2<WT, 4, 2>(wr, a.cols, x + t * a.cols, a.cols, k0, k1, y + t * a.rows + r, a.rows, k0 > 0);
          else gemm_tile_avx2<WT, 1, 2>(wr, a.cols, x + t * a.cols, a.cols, k0, k1, y + t * a.rows + r, a.rows, k0 > 0);
        }
        if (t < nt) {
          if (four) gemm_tile_avx2<WT, 4, 1>(wr, a.cols, x + t * a.cols, a.cols, k0, k1, y + t * a.rows + r, a.rows, k0 > 0);
          else gemm_tile_avx2<WT, 1, 1>(wr, a.cols, x + t * a.cols, a.cols, k0, k1, y + t * a.rows + r, a.rows, k0 > 0);
        }
        r += four ? 4 : 1;
      }
    }
  }
}
#endif  // LMLAB_X86

using RowsFn = void (*)(const MatmulArgs&, int64_t, int64_t);

template <WeightType WT>
RowsFn pick(Isa isa) {
#if LMLAB_X86
  if (isa == Isa::avx512) return &rows_avx512<WT>;
  if (isa == Isa::avx2) return &rows_avx2<WT>;
#endif
  return &rows_scalar<WT>;
}

}  // namespace

void matmul(const MatmulArgs& a) {
  if (a.rows <= 0 || a.n <= 0) return;
  if (a.cols <= 0) {
    std::fill(a.y, a.y + a.n * a.rows, 0.0f);
    return;
  }
  if (matmul_uses_half_i16(a)) {
    matmul_half_i16(a);
    return;
  }
  if (matmul_uses_bf16_dot(a)) {
    if (a.n == 1) matmul_bf16_gemv(a);
    else matmul_bf16_gemm(a);
    return;
  }
  const Isa isa = active_isa();
  RowsFn fn = nullptr;
  switch (a.type) {
    case WeightType::f32: fn = pick<WeightType::f32>(isa); break;
    case WeightType::f16: fn = pick<WeightType::f16>(isa); break;
    case WeightType::bf16: fn = pick<WeightType::bf16>(isa); break;
  }
  const int64_t n_blocks = (a.rows + 3) / 4;
  ThreadPool::global().parallel_for(
      n_blocks, [&](int64_t b0, int64_t b1) { fn(a, b0 * 4, std::min(a.rows, b1 * 4)); },
      min_row_blocks(a.cols, a.n));
}

}  // namespace lmlab::kernels::cpu
