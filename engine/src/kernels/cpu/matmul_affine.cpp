// Optimised fused dequantize-and-multiply over MLX affine weights (see matmul_affine.h for the layout).
//
// Fast paths (AVX-512, AVX2) for 2, 4 and 8 bits read the packed row 16 bytes at a time ("chunk") and widen
// each byte to a 32-bit lane; a byte holds vpb = 8 / bits values, so one chunk yields vpb vectors whose
// lanes are the values {i * vpb + j : i = 0..15} for j = 0..vpb-1. Instead of shuffling the weights back
// into order, x is permuted once per call into the same order (xp[chunk][j * 16 + i] = x[chunk][i * vpb + j];
// the identity for 8 bits), so the inner loop is widen, shift/mask, convert, FMA.
//
// n == 1 (decode): 4 rows side by side share the x loads; per group the raw dot q . x is accumulated
// unscaled in two accumulators, then multiplied by the group's scale (converted from its stored type 16 groups
// at a time); the biases contribute sum_g b_g * sum(x in g), one vector dot per row with the per-group sums of
// x computed once per call. At 4 bits this is bound by the vector ports (widen, mask/shift, convert, FMA per
// 16 values) rather than by memory: about 8 GB/s of packed weights per core on the dev machine's AVX-512.
// n > 1 (prefill): a 4-row x kKc-column tile is dequantized (s * q + b) into an L1-resident f32 buffer and
// reused by all tokens of a kTb-token block (4 x 4 register tiles on AVX-512, 4 x 2 on AVX2); later column
// blocks accumulate into Y.
// Everything else (3, 5, 6 bits, 2 bits with 32-wide groups, or no AVX2) unpacks one row at a time into an
// f32 buffer and dots it with every token. Threads split the output rows in blocks of 4 (ThreadPool::global()).
#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/cpu/affine_scales.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/simd.h"
#include "kernels/matmul_affine.h"
#include "util/half.h"
#include "util/thread_pool.h"

namespace lmlab::kernels::cpu {

namespace {

constexpr int64_t kKc = 512;  // prefill column block: a 4-row f32 tile is 8 KiB
constexpr int64_t kTb = 64;   // prefill token block: a [kTb, kKc] panel of x is 128 KiB (fits L2)

// Work per parallel chunk: at least ~64K multiply-adds.
int64_t min_row_blocks(int64_t cols, int64_t n) {
  return std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(1, 4 * cols * n));
}

bool fast_path(const AffineWeight& w) {
  if (w.bits != 2 && w.bits != 4 && w.bits != 8) return false;
  const int vpb = 8 / w.bits;
  // One loop step covers 32 values (8 and 4 bits: two / one chunk) or 64 (2 bits: one chunk).
  const int step = w.bits == 2 ? 64 : 32;
  return w.group_size % step == 0 && w.group_size % (16 * vpb) == 0;
}

void convert_scales(const void* p, ScaleType t, int64_t offset, int64_t n, float* out) {
  switch (t) {
    case ScaleType::f32: std::memcpy(out, static_cast<const float*>(p) + offset, n * sizeof(float)); break;
    case ScaleType::f16:
      for (int64_t i = 0; i < n; ++i) out[i] = f16_to_f32(static_cast<const uint16_t*>(p)[offset + i]);
      break;
    case ScaleType::bf16:
      for (int64_t i = 0; i < n; ++i) out[i] = bf16_to_f32(static_cast<const uint16_t*>(p)[offset + i]);
      break;
  }
}

// Per-thread f32 copies of the scales and biases of rows [r0, r0 + nr), groups [g0, g0 + ng): [nr, ng] each.
struct RowScales {
  std::vector<float> s, b;
  void load(const AffineWeight& w, int64_t r0, int64_t nr, int64_t g0, int64_t ng) {
    const int64_t G = w.groups_per_row();
    s.resize(static_cast<size_t>(nr * ng));
    b.resize(static_cast<size_t>(nr * ng));
    for (int64_t i = 0; i < nr; ++i) {
      convert_scales(w.scales, w.scale_type, (r0 + i) * G + g0, ng, s.data() + i * ng);
      convert_scales(w.biases, w.scale_type, (r0 + i) * G + g0, ng, b.data() + i * ng);
    }
  }
  void load(const AffineWeight& w, int64_t r0, int64_t nr) { load(w, r0, nr, 0, w.groups_per_row()); }
};

// Per-call activations in the packed order, and per-group sums of x (decode bias term).
struct Prepared {
  const float* xp;            // [n, cols]
  std::vector<float> xp_buf;  // storage when the order differs from x
  std::vector<float> xsum;    // [n, groups] (decode only)
};

void prepare(const MatmulAffineArgs& a, bool permute, bool sums, Prepared& p) {
  const AffineWeight& w = a.w;
  const int64_t cols = w.cols;
  p.xp = a.x;
  if (permute && w.bits != 8) {
    const int vpb = 8 / w.bits;
    const int64_t chunk = 16 * vpb;
    p.xp_buf.resize(static_cast<size_t>(a.n * cols));
    for (int64_t t = 0; t < a.n; ++t)
      for (int64_t c0 = 0; c0 < cols; c0 += chunk) {
        const float* x = a.x + t * cols + c0;
        float* o = p.xp_buf.data() + t * cols + c0;
        for (int i = 0; i < 16; ++i)
          for (int j = 0; j < vpb; ++j) o[j * 16 + i] = x[i * vpb + j];
      }
    p.xp = p.xp_buf.data();
  }
  if (sums) {
    const int64_t G = w.groups_per_row(), gs = w.group_size;
    p.xsum.resize(static_cast<size_t>(a.n * G));
    for (int64_t t = 0; t < a.n; ++t)
      for (int64_t g = 0; g < G; ++g) {
        float s = 0.0f;
        for (int64_t c = 0; c < gs; ++c) s += a.x[t * cols + g * gs + c];
        p.xsum[t * G + g] = s;
      }
  }
}

// ------------------------------------------------------------------------------------------- generic

// Row r unpacked and dequantized into out[cols] (natural order), any bits from 2 to 8.
void dequantize_row_generic(const AffineWeight& w, int64_t r, const float* s, const float* b, float* out) {
  const auto* row = reinterpret_cast<const uint8_t*>(w.packed + r * w.words_per_row());
  const int64_t row_bytes = w.words_per_row() * 4;
  const uint32_t mask = (1u << w.bits) - 1u;
  for (int64_t c = 0; c < w.cols; ++c) {
    const int64_t bit = c * w.bits, byte = bit / 8;
    uint32_t window = row[byte];
    if (byte + 1 < row_bytes) window |= static_cast<uint32_t>(row[byte + 1]) << 8;
    const int64_t g = c / w.group_size;
    out[c] = s[g] * static_cast<float>((window >> (bit % 8)) & mask) + b[g];
  }
}

inline float dot_scalar(const float* a, const float* b, int64_t n) {
  float acc[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) acc[j] += a[i + j] * b[i + j];
  for (; i < n; ++i) acc[0] += a[i] * b[i];
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

#if LMLAB_X86
LMLAB_TARGET_AVX512 float dot_avx512(const float* a, const float* b, int64_t n) {
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
    s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
  }
  for (; i < n; i += 16) {
    const __mmask16 m = simd::tail_mask16(std::min<int64_t>(16, n - i));
    s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), s0);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

LMLAB_TARGET_AVX2 float dot_avx2(const float* a, const float* b, int64_t n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
  }
  float s = simd::hsum8(_mm256_add_ps(s0, s1));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}
#endif

using DotFn = float (*)(const float*, const float*, int64_t);

DotFn pick_dot(Isa isa) {
#if LMLAB_X86
  if (isa == Isa::avx512) return &dot_avx512;
  if (isa == Isa::avx2) return &dot_avx2;
#endif
  return &dot_scalar;
}

void rows_generic(const MatmulAffineArgs& a, Isa isa, int64_t r0, int64_t r1) {
  thread_local RowScales sc;
  thread_local std::vector<float> row;
  const DotFn dot = pick_dot(isa);
  row.resize(static_cast<size_t>(a.w.cols));
  for (int64_t r = r0; r < r1; ++r) {
    sc.load(a.w, r, 1);
    dequantize_row_generic(a.w, r, sc.s.data(), sc.b.data(), row.data());
    for (int64_t t = 0; t < a.n; ++t) a.y[t * a.w.rows + r] = dot(row.data(), a.x + t * a.w.cols, a.w.cols);
  }
}

#if LMLAB_X86
// ------------------------------------------------------------------------------------------- AVX-512

// One 16-byte chunk -> 8 / BITS vectors of 16 values (lanes i, value i * vpb + j in vector j).
template <int BITS>
LMLAB_TARGET_AVX512 inline void expand_avx512(const uint8_t* p, __m512* q) {
  const __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  if constexpr (BITS == 8) {
    q[0] = _mm512_cvtepi32_ps(b);
  } else if constexpr (BITS == 4) {
    q[0] = _mm512_cvtepi32_ps(_mm512_and_si512(b, _mm512_set1_epi32(15)));
    q[1] = _mm512_cvtepi32_ps(_mm512_srli_epi32(b, 4));
  } else {
    const __m512i m = _mm512_set1_epi32(3);
    q[0] = _mm512_cvtepi32_ps(_mm512_and_si512(b, m));
    q[1] = _mm512_cvtepi32_ps(_mm512_and_si512(_mm512_srli_epi32(b, 2), m));
    q[2] = _mm512_cvtepi32_ps(_mm512_and_si512(_mm512_srli_epi32(b, 4), m));
    q[3] = _mm512_cvtepi32_ps(_mm512_srli_epi32(b, 6));
  }
}

// y[0..R) for one token over R consecutive rows starting at byte row pointer w (row stride row_bytes).
// s, b: scales and biases of the first row (row stride G), xp: permuted x, xsum: [G] sums of x per group.
template <int BITS, int R, ScaleType ST>
LMLAB_TARGET_AVX512 void gemv_avx512(const uint8_t* w, int64_t row_bytes, const void* s, const void* b, int64_t G,
                                     int64_t gs, const float* xp, const float* xsum, float* y) {
  constexpr int V = 8 / BITS;              // vectors per chunk
  constexpr int CPS = BITS == 8 ? 2 : 1;   // chunks per loop step
  constexpr int VPS = V * CPS;             // vectors per step (2 or 4)
  const int64_t step_values = 16 * VPS, step_bytes = 16 * CPS;
  const int64_t steps = gs / step_values;
  __m512 acc[R];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  const uint8_t* wp = w;
  const float* xg = xp;
  alignas(64) float sbuf[R][16];  // the scales of 16 groups as f32, broadcast from memory per group
  for (int64_t g = 0; g < G; ++g) {
    if (g % 16 == 0) {
      const __mmask16 m = simd::tail_mask16(std::min<int64_t>(16, G - g));
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) _mm512_store_ps(sbuf[r], load_scales16<ST>(s, r * G + g, m));
    }
    __m512 d0[R], d1[R];
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) d0[r] = d1[r] = _mm512_setzero_ps();
    for (int64_t k = 0; k < steps; ++k) {
      __m512 xv[VPS];
#pragma GCC unroll 4
      for (int v = 0; v < VPS; ++v) xv[v] = _mm512_loadu_ps(xg + v * 16);
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        __m512 q[VPS];
#pragma GCC unroll 2
        for (int c = 0; c < CPS; ++c) expand_avx512<BITS>(wp + r * row_bytes + c * 16, q + c * V);
#pragma GCC unroll 4
        for (int v = 0; v < VPS; v += 2) {
          d0[r] = _mm512_fmadd_ps(q[v], xv[v], d0[r]);
          d1[r] = _mm512_fmadd_ps(q[v + 1], xv[v + 1], d1[r]);
        }
      }
      wp += step_bytes;
      xg += step_values;
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) acc[r] = _mm512_fmadd_ps(_mm512_add_ps(d0[r], d1[r]), _mm512_set1_ps(sbuf[r][g % 16]), acc[r]);
  }
  const size_t sb = ST == ScaleType::f32 ? 4 : 2;
  float bsum[R];
  for (int r = 0; r < R; ++r) bsum[r] = bias_dot_avx512<ST>(static_cast<const uint8_t*>(b) + r * G * sb, xsum, G);
  if constexpr (R == 4) {
    _mm_storeu_ps(y, _mm_add_ps(simd::hsum4(acc[0], acc[1], acc[2], acc[3]), _mm_loadu_ps(bsum)));
  } else {
    for (int r = 0; r < R; ++r) y[r] = _mm512_reduce_add_ps(acc[r]) + bsum[r];
  }
}

// Dequantizes rows [0, R) x kc columns (whole groups; w points at the block's first byte, s and b at its first
// group, row stride G) into tile[R][kc], in the permuted order.
template <int BITS, int R>
LMLAB_TARGET_AVX512 void dequant_tile_avx512(const uint8_t* w, int64_t row_bytes, const float* s, const float* b,
                                             int64_t G, int64_t gs, int64_t kc, float* tile) {
  constexpr int V = 8 / BITS;
  const int64_t chunk_values = 16 * V;
  for (int r = 0; r < R; ++r) {
    const uint8_t* wp = w + r * row_bytes;
    float* out = tile + r * kc;
    for (int64_t c = 0; c < kc; c += chunk_values, wp += 16, out += chunk_values) {
      const int64_t g = c / gs;
      const __m512 sv = _mm512_set1_ps(s[r * G + g]), bv = _mm512_set1_ps(b[r * G + g]);
      __m512 q[V];
      expand_avx512<BITS>(wp, q);
#pragma GCC unroll 4
      for (int v = 0; v < V; ++v) _mm512_storeu_ps(out + v * 16, _mm512_fmadd_ps(q[v], sv, bv));
    }
  }
}

// R tile rows x T tokens over kc columns: y[t * ldy + r] (+)= tile[r] . x[t * ldx].
template <int R, int T>
LMLAB_TARGET_AVX512 void tile_gemm_avx512(const float* tile, int64_t kc, const float* x, int64_t ldx, float* y,
                                          int64_t ldy, bool accumulate) {
  __m512 acc[R][T];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int t = 0; t < T; ++t) acc[r][t] = _mm512_setzero_ps();
  for (int64_t k = 0; k < kc; k += 16) {
    __m512 wv[R];
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) wv[r] = _mm512_loadu_ps(tile + r * kc + k);
#pragma GCC unroll 4
    for (int t = 0; t < T; ++t) {
      const __m512 xv = _mm512_loadu_ps(x + t * ldx + k);
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) acc[r][t] = _mm512_fmadd_ps(wv[r], xv, acc[r][t]);
    }
  }
#pragma GCC unroll 4
  for (int t = 0; t < T; ++t) {
    float* yt = y + t * ldy;
    if constexpr (R == 4) {
      __m128 v = simd::hsum4(acc[0][t], acc[1][t], acc[2][t], acc[3][t]);
      if (accumulate) v = _mm_add_ps(v, _mm_loadu_ps(yt));
      _mm_storeu_ps(yt, v);
    } else {
      for (int r = 0; r < R; ++r) {
        const float v = _mm512_reduce_add_ps(acc[r][t]);
        yt[r] = accumulate ? yt[r] + v : v;
      }
    }
  }
}

template <int R>
LMLAB_TARGET_AVX512 void tile_tokens_avx512(const float* tile, int64_t kc, const float* x, int64_t ldx, int64_t nt,
                                            float* y, int64_t ldy, bool accumulate) {
  int64_t t = 0;
  for (; t + 4 <= nt; t += 4) tile_gemm_avx512<R, 4>(tile, kc, x + t * ldx, ldx, y + t * ldy, ldy, accumulate);
  switch (nt - t) {
    case 3: tile_gemm_avx512<R, 3>(tile, kc, x + t * ldx, ldx, y + t * ldy, ldy, accumulate); break;
    case 2: tile_gemm_avx512<R, 2>(tile, kc, x + t * ldx, ldx, y + t * ldy, ldy, accumulate); break;
    case 1: tile_gemm_avx512<R, 1>(tile, kc, x + t * ldx, ldx, y + t * ldy, ldy, accumulate); break;
    default: break;
  }
}

// ------------------------------------------------------------------------------------------- AVX2

// One 8-byte half chunk -> 8 / BITS vectors of 8 values (lanes i, value i * vpb + j in vector j).
template <int BITS>
LMLAB_TARGET_AVX2 inline void expand_avx2(const uint8_t* p, __m256* q) {
  const __m256i b = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
  if constexpr (BITS == 8) {
    q[0] = _mm256_cvtepi32_ps(b);
  } else if constexpr (BITS == 4) {
    q[0] = _mm256_cvtepi32_ps(_mm256_and_si256(b, _mm256_set1_epi32(15)));
    q[1] = _mm256_cvtepi32_ps(_mm256_srli_epi32(b, 4));
  } else {
    const __m256i m = _mm256_set1_epi32(3);
    q[0] = _mm256_cvtepi32_ps(_mm256_and_si256(b, m));
    q[1] = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(b, 2), m));
    q[2] = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(b, 4), m));
    q[3] = _mm256_cvtepi32_ps(_mm256_srli_epi32(b, 6));
  }
}

// As gemv_avx512; a step is one 16-byte chunk taken as two 8-byte halves h, whose vector j multiplies
// xp[j * 16 + h * 8 .. + 8). For 8 bits two chunks make a step (32 values) like the other widths.
template <int BITS, int R, ScaleType ST>
LMLAB_TARGET_AVX2 void gemv_avx2(const uint8_t* w, int64_t row_bytes, const void* s, const void* b, int64_t G,
                                 int64_t gs, const float* xp, const float* xsum, float* y) {
  constexpr int V = 8 / BITS;
  constexpr int CPS = BITS == 8 ? 2 : 1;
  const int64_t step_values = 16 * V * CPS, step_bytes = 16 * CPS;
  const int64_t steps = gs / step_values;
  __m256 acc[R];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
  const uint8_t* wp = w;
  const float* xg = xp;
  for (int64_t g = 0; g < G; ++g) {
    __m256 d0[R], d1[R];
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) d0[r] = d1[r] = _mm256_setzero_ps();
    for (int64_t k = 0; k < steps; ++k) {
#pragma GCC unroll 2
      for (int c = 0; c < CPS; ++c) {
#pragma GCC unroll 2
        for (int h = 0; h < 2; ++h) {
#pragma GCC unroll 4
          for (int r = 0; r < R; ++r) {
            __m256 q[V];
            expand_avx2<BITS>(wp + r * row_bytes + c * 16 + h * 8, q);
#pragma GCC unroll 4
            for (int j = 0; j < V; ++j) {
              const __m256 xv = _mm256_loadu_ps(xg + c * 16 * V + j * 16 + h * 8);
              if ((j + h) % 2 == 0) d0[r] = _mm256_fmadd_ps(q[j], xv, d0[r]);
              else d1[r] = _mm256_fmadd_ps(q[j], xv, d1[r]);
            }
          }
        }
      }
      wp += step_bytes;
      xg += step_values;
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r)
      acc[r] = _mm256_fmadd_ps(_mm256_add_ps(d0[r], d1[r]), _mm256_set1_ps(scale_at<ST>(s, r * G + g)), acc[r]);
  }
  const size_t sb = ST == ScaleType::f32 ? 4 : 2;
  float bsum[R];
  for (int r = 0; r < R; ++r) bsum[r] = bias_dot_avx2<ST>(static_cast<const uint8_t*>(b) + r * G * sb, xsum, G);
  if constexpr (R == 4) {
    _mm_storeu_ps(y, _mm_add_ps(simd::hsum4(acc[0], acc[1], acc[2], acc[3]), _mm_loadu_ps(bsum)));
  } else {
    for (int r = 0; r < R; ++r) y[r] = simd::hsum8(acc[r]) + bsum[r];
  }
}

template <int BITS, int R>
LMLAB_TARGET_AVX2 void dequant_tile_avx2(const uint8_t* w, int64_t row_bytes, const float* s, const float* b,
                                         int64_t G, int64_t gs, int64_t kc, float* tile) {
  constexpr int V = 8 / BITS;
  const int64_t chunk_values = 16 * V;
  for (int r = 0; r < R; ++r) {
    const uint8_t* wp = w + r * row_bytes;
    float* out = tile + r * kc;
    for (int64_t c = 0; c < kc; c += chunk_values, wp += 16, out += chunk_values) {
      const int64_t g = c / gs;
      const __m256 sv = _mm256_set1_ps(s[r * G + g]), bv = _mm256_set1_ps(b[r * G + g]);
#pragma GCC unroll 2
      for (int h = 0; h < 2; ++h) {
        __m256 q[V];
        expand_avx2<BITS>(wp + h * 8, q);
#pragma GCC unroll 4
        for (int j = 0; j < V; ++j) _mm256_storeu_ps(out + j * 16 + h * 8, _mm256_fmadd_ps(q[j], sv, bv));
      }
    }
  }
}

template <int R, int T>
LMLAB_TARGET_AVX2 void tile_gemm_avx2(const float* tile, int64_t kc, const float* x, int64_t ldx, float* y,
                                      int64_t ldy, bool accumulate) {
  __m256 acc[R][T];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_ps();
  for (int64_t k = 0; k < kc; k += 8) {
    __m256 xv[T];
#pragma GCC unroll 4
    for (int t = 0; t < T; ++t) xv[t] = _mm256_loadu_ps(x + t * ldx + k);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const __m256 wv = _mm256_loadu_ps(tile + r * kc + k);
#pragma GCC unroll 4
      for (int t = 0; t < T; ++t) acc[r][t] = _mm256_fmadd_ps(wv, xv[t], acc[r][t]);
    }
  }
#pragma GCC unroll 4
  for (int t = 0; t < T; ++t) {
    float* yt = y + t * ldy;
    if constexpr (R == 4) {
      __m128 v = simd::hsum4(acc[0][t], acc[1][t], acc[2][t], acc[3][t]);
      if (accumulate) v = _mm_add_ps(v, _mm_loadu_ps(yt));
      _mm_storeu_ps(yt, v);
    } else {
      for (int r = 0; r < R; ++r) {
        const float v = simd::hsum8(acc[r][t]);
        yt[r] = accumulate ? yt[r] + v : v;
      }
    }
  }
}

template <int R>
LMLAB_TARGET_AVX2 void tile_tokens_avx2(const float* tile, int64_t kc, const float* x, int64_t ldx, int64_t nt,
                                        float* y, int64_t ldy, bool accumulate) {
  int64_t t = 0;
  for (; t + 2 <= nt; t += 2) tile_gemm_avx2<R, 2>(tile, kc, x + t * ldx, ldx, y + t * ldy, ldy, accumulate);
  if (t < nt) tile_gemm_avx2<R, 1>(tile, kc, x + t * ldx, ldx, y + t * ldy, ldy, accumulate);
}

// ------------------------------------------------------------------------------------------- drivers

// Decode and prefill over rows [r0, r1) for one ISA (A = 512 or 256) and bit width.
template <int A, int BITS>
struct Fast {
  template <int R, ScaleType ST>
  static void gemv(const uint8_t* w, int64_t rb, const void* s, const void* b, int64_t G, int64_t gs,
                   const float* xp, const float* xsum, float* y) {
    if constexpr (A == 512) gemv_avx512<BITS, R, ST>(w, rb, s, b, G, gs, xp, xsum, y);
    else gemv_avx2<BITS, R, ST>(w, rb, s, b, G, gs, xp, xsum, y);
  }

  // Decode over rows [r0, r1): 4 rows at a time, scales read in their stored type.
  template <ScaleType ST>
  static void decode(const MatmulAffineArgs& a, const Prepared& p, int64_t r0, int64_t r1) {
    const AffineWeight& w = a.w;
    const int64_t G = w.groups_per_row(), rb = w.words_per_row() * 4;
    const size_t sb = ST == ScaleType::f32 ? 4 : 2;
    const auto* base = reinterpret_cast<const uint8_t*>(w.packed);
    const auto* s = static_cast<const uint8_t*>(w.scales);
    const auto* b = static_cast<const uint8_t*>(w.biases);
    int64_t r = r0;
    for (; r + 4 <= r1; r += 4)
      gemv<4, ST>(base + r * rb, rb, s + r * G * sb, b + r * G * sb, G, w.group_size, p.xp, p.xsum.data(), a.y + r);
    for (; r < r1; ++r)
      gemv<1, ST>(base + r * rb, rb, s + r * G * sb, b + r * G * sb, G, w.group_size, p.xp, p.xsum.data(), a.y + r);
  }
  template <int R>
  static void dequant(const uint8_t* w, int64_t rb, const float* s, const float* b, int64_t G, int64_t gs,
                      int64_t kc, float* tile) {
    if constexpr (A == 512) dequant_tile_avx512<BITS, R>(w, rb, s, b, G, gs, kc, tile);
    else dequant_tile_avx2<BITS, R>(w, rb, s, b, G, gs, kc, tile);
  }
  template <int R>
  static void tokens(const float* tile, int64_t kc, const float* x, int64_t ldx, int64_t nt, float* y, int64_t ldy,
                     bool acc) {
    if constexpr (A == 512) tile_tokens_avx512<R>(tile, kc, x, ldx, nt, y, ldy, acc);
    else tile_tokens_avx2<R>(tile, kc, x, ldx, nt, y, ldy, acc);
  }

  static void rows(const MatmulAffineArgs& a, const Prepared& p, int64_t r0, int64_t r1) {
    const AffineWeight& w = a.w;
    const int64_t gs = w.group_size, cols = w.cols, rows = w.rows;
    const int64_t rb = w.words_per_row() * 4;
    const auto* base = reinterpret_cast<const uint8_t*>(w.packed);
    if (a.n == 1) {
      switch (w.scale_type) {
        case ScaleType::f32: decode<ScaleType::f32>(a, p, r0, r1); break;
        case ScaleType::f16: decode<ScaleType::f16>(a, p, r0, r1); break;
        case ScaleType::bf16: decode<ScaleType::bf16>(a, p, r0, r1); break;
      }
      return;
    }
    thread_local RowScales sc;
    // Prefill: column blocks of whole groups, at least one group wide.
    const int64_t kc_max = std::max<int64_t>(gs, kKc / gs * gs);
    thread_local std::vector<float> tile;
    tile.resize(static_cast<size_t>(4 * kc_max));
    for (int64_t t0 = 0; t0 < a.n; t0 += kTb) {
      const int64_t nt = std::min(kTb, a.n - t0);
      for (int64_t c0 = 0; c0 < cols; c0 += kc_max) {
        const int64_t kc = std::min(kc_max, cols - c0);
        const int64_t g0 = c0 / gs, ng = kc / gs;
        const uint8_t* wblock = base + c0 * BITS / 8;
        for (int64_t r = r0; r < r1;) {
          const int nr = r + 4 <= r1 ? 4 : 1;
          sc.load(w, r, nr, g0, ng);
          const float* x = p.xp + t0 * cols + c0;
          float* y = a.y + t0 * rows + r;
          if (nr == 4) {
            dequant<4>(wblock + r * rb, rb, sc.s.data(), sc.b.data(), ng, gs, kc, tile.data());
            tokens<4>(tile.data(), kc, x, cols, nt, y, rows, c0 > 0);
          } else {
            dequant<1>(wblock + r * rb, rb, sc.s.data(), sc.b.data(), ng, gs, kc, tile.data());
            tokens<1>(tile.data(), kc, x, cols, nt, y, rows, c0 > 0);
          }
          r += nr;
        }
      }
    }
  }
};
#endif  // LMLAB_X86

using RowsFn = void (*)(const MatmulAffineArgs&, const Prepared&, int64_t, int64_t);

RowsFn pick_fast(Isa isa, int bits) {
#if LMLAB_X86
  if (isa == Isa::avx512) {
    if (bits == 8) return &Fast<512, 8>::rows;
    if (bits == 4) return &Fast<512, 4>::rows;
    if (bits == 2) return &Fast<512, 2>::rows;
  } else if (isa == Isa::avx2) {
    if (bits == 8) return &Fast<256, 8>::rows;
    if (bits == 4) return &Fast<256, 4>::rows;
    if (bits == 2) return &Fast<256, 2>::rows;
  }
#endif
  return nullptr;
}

}  // namespace

void matmul_affine(const MatmulAffineArgs& a) {
  const AffineWeight& w = a.w;
  if (w.rows <= 0 || a.n <= 0) return;
  const Isa isa = active_isa();
  const RowsFn fast = fast_path(w) ? pick_fast(isa, w.bits) : nullptr;
  const int64_t n_blocks = (w.rows + 3) / 4;
  const int64_t min_chunk = min_row_blocks(w.cols, a.n);
  if (!fast) {
    ThreadPool::global().parallel_for(
        n_blocks, [&](int64_t b0, int64_t b1) { rows_generic(a, isa, b0 * 4, std::min(w.rows, b1 * 4)); }, min_chunk);
    return;
  }
  Prepared p;
  prepare(a, /*permute=*/true, /*sums=*/a.n == 1, p);
  ThreadPool::global().parallel_for(
      n_blocks, [&](int64_t b0, int64_t b1) { fast(a, p, b0 * 4, std::min(w.rows, b1 * 4)); }, min_chunk);
}

}  // namespace lmlab::kernels::cpu
