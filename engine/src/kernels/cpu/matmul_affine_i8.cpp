// Split-int8 4-bit affine matmul (see matmul_affine_i8.h for the arithmetic).
//
// Vector layout. A "chunk" is 64 bytes of a packed row (128 values, 4 activation blocks). The AVX-512 kernel
// loads one chunk of each of 16 rows and transposes the 16 x 16 dwords, so that vector i holds dword i of the
// 16 rows: lane l = row l. Dword i holds values 8i .. 8i+7 of the chunk, value 8i+j in bits 4j; masking the low
// nibble of each byte gives the u8 values 8i + {0, 2, 4, 6}, the high nibble 8i + {1, 3, 5, 7}. The activations
// are stored once per call in that order (per 8 values: 0 2 4 6 1 3 5 7), per block of 32 values the 32 hi bytes
// then the 32 lo bytes, zero-padded to whole chunks, so a token's 4 bytes for dword i are one broadcast and
// vpdpbusd (u8 x s8 quads -> int32) leaves in lane l the dot of row l with the token's block. Per block and token
// the hi and lo dots are combined (256 * hi + lo), converted once and multiplied by s[l, g] * xd[b]; per group and
// token the bias term adds bias[l, g] * X[g]. The scales and biases of a 16-row block are laid out per group as
// 16 f32 once per block (shared by all tokens). The AVX2 kernel is the same with 8 rows, an 8 x 8 transpose of
// 32-byte half chunks and vpmaddubsw + vpmaddwd.
//
// Rows are split over threads in 16-row blocks; each block runs up to 8 tokens at once, reusing the unpacked
// weight vectors. Every token's arithmetic is the same whatever the others: batch-invariant.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "kernels/cpu/affine_scales.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/matmul_affine_i8_pack.h"
#include "kernels/cpu/simd.h"
#include "kernels/matmul_affine_i8.h"
#include "util/thread_pool.h"

namespace lmlab::kernels::cpu {

namespace {

constexpr int64_t kChunkBytes = 64;
constexpr int kMaxTokens = kI8MaxTokens;
// How far ahead in each row the kernels prefetch (into L1: L2-only prefetches or none made an 8-token call on a
// 29 MB matrix ~2x slower; 2 and 8 chunks were no better than 4).
constexpr int64_t kPrefetchChunks = 4;

#if LMLAB_X86

// Per block of 32 int16 values: dst[64 b ..] = their 32 hi bytes, dst[64 b + 32 ..] = their 32 lo bytes
// (q = 256 * hi + lo, hi = (q + 128) >> 8), each 8 reordered 0 2 4 6 1 3 5 7.
LMLAB_TARGET_AVX2 void split_avx2(const int16_t* src, int8_t* dst, int64_t blocks) {
  const __m256i perm = _mm256_setr_epi8(0, 2, 4, 6, 1, 3, 5, 7, 8, 10, 12, 14, 9, 11, 13, 15,
                                        0, 2, 4, 6, 1, 3, 5, 7, 8, 10, 12, 14, 9, 11, 13, 15);
  const __m256i half = _mm256_set1_epi16(128);
  for (int64_t b = 0; b < blocks; ++b, src += kI8Block, dst += 2 * kI8Block) {
    const __m256i q0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src));
    const __m256i q1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + 16));
    const __m256i h0 = _mm256_srai_epi16(_mm256_add_epi16(q0, half), 8), h1 = _mm256_srai_epi16(_mm256_add_epi16(q1, half), 8);
    const __m256i l0 = _mm256_sub_epi16(q0, _mm256_slli_epi16(h0, 8)), l1 = _mm256_sub_epi16(q1, _mm256_slli_epi16(h1, 8));
    // packs (exact: both in [-128, 127]) interleaves the 128-bit lanes of its inputs; the permute undoes it.
    const __m256i hb = _mm256_permute4x64_epi64(_mm256_packs_epi16(h0, h1), 0xd8);
    const __m256i lb = _mm256_permute4x64_epi64(_mm256_packs_epi16(l0, l1), 0xd8);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst), _mm256_shuffle_epi8(hb, perm));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + kI8Block), _mm256_shuffle_epi8(lb, perm));
  }
}
#endif

#if LMLAB_X86
// ------------------------------------------------------------------------------------------- AVX-512 VNNI

// Scales and biases of a 16-row block as f32 [G][16] (lane l = rows[l]), transposed 16 groups at a time into
// tables padded to a multiple of 16 groups.
template <ScaleType ST>
LMLAB_TARGET_AVX512 void scale_table16(const AffineWeight& w, const int64_t* rows, float* st, float* bt) {
  const int64_t G = w.groups_per_row();
  for (int which = 0; which < 2; ++which) {
    const void* src = which == 0 ? w.scales : w.biases;
    float* dst = which == 0 ? st : bt;
    for (int64_t g0 = 0; g0 < G; g0 += 16) {
      const int64_t ng = std::min<int64_t>(16, G - g0);
      __m512i v[16];
      for (int l = 0; l < 16; ++l) v[l] = _mm512_castps_si512(load_scales16<ST>(src, rows[l] * G + g0, simd::tail_mask16(ng)));
      simd::transpose16(v);
#pragma GCC unroll 16
      for (int i = 0; i < 16; ++i) _mm512_storeu_si512(dst + (g0 + i) * 16, v[i]);  // the table is padded
    }
  }
}

// y[t * ldy + l] for rows l < nr of a 16-row block and T tokens. rows: the 16 rows' packed bytes (rows past
// the matrix point at its last row); st / bt: scale_table16; xq / d / xg: the first token's rows of Packed::q,
// I8Activations::d and Packed::xg.
template <int T>
LMLAB_TARGET_AVX512_VNNI void tile_vnni(const uint8_t* const* rows, int64_t rb, int nr, const float* st, const float* bt,
                                        const Packed& p, int64_t bpg, const int8_t* xq, const float* d, const float* xg,
                                        float* y, int64_t ldy) {
  const int64_t chunks = p.chunks, nb = p.nb, ldx = p.ldx, G = p.G;
  const int64_t tail_bytes = rb - (chunks - 1) * kChunkBytes;
  const __mmask64 tail = tail_bytes >= 64 ? ~__mmask64{0} : (__mmask64{1} << tail_bytes) - 1;
  const __m512i nib = _mm512_set1_epi8(0x0f);
  __m512 acc[T];
#pragma GCC unroll 16
  for (int t = 0; t < T; ++t) acc[t] = _mm512_setzero_ps();
  for (int64_t k = 0; k < chunks; ++k) {
    __m512i wt[16];
    const __mmask64 m = k + 1 < chunks ? ~__mmask64{0} : tail;
#pragma GCC unroll 16
    for (int l = 0; l < 16; ++l) {
      _mm_prefetch(reinterpret_cast<const char*>(rows[l] + (k + kPrefetchChunks) * kChunkBytes), _MM_HINT_T0);
      wt[l] = _mm512_maskz_loadu_epi8(m, rows[l] + k * kChunkBytes);
    }
    simd::transpose16(wt);
#pragma GCC unroll 16
    for (int j = 0; j < 4; ++j) {
      const int64_t b = 4 * k + j;
      if (b >= nb) break;
      const int64_t g = b / bpg;
      const __m512 sv = _mm512_loadu_ps(st + g * 16);
      if (b % bpg == 0) {
        const __m512 bv = _mm512_loadu_ps(bt + g * 16);
#pragma GCC unroll 16
        for (int t = 0; t < T; ++t) acc[t] = _mm512_fmadd_ps(bv, _mm512_set1_ps(xg[t * G + g]), acc[t]);
      }
      __m512i lo[4], hi[4];
#pragma GCC unroll 16
      for (int i = 0; i < 4; ++i) {
        lo[i] = _mm512_and_si512(wt[4 * j + i], nib);
        hi[i] = _mm512_and_si512(_mm512_srli_epi16(wt[4 * j + i], 4), nib);
      }
      block_dot_vnni<T>(lo, hi, xq, ldx, b, sv, d, nb, acc);
    }
  }
  const __mmask16 out = simd::tail_mask16(nr);
#pragma GCC unroll 16
  for (int t = 0; t < T; ++t) _mm512_mask_storeu_ps(y + t * ldy, out, acc[t]);
}

// ------------------------------------------------------------------------------------------- AVX2

// In place: r[i] lane a <- r[a] lane i (8 x 8 dwords).
LMLAB_TARGET_AVX2 inline void transpose8(__m256i* r) {
  __m256i t[8], u[8];
  for (int p = 0; p < 4; ++p) {
    t[2 * p] = _mm256_unpacklo_epi32(r[2 * p], r[2 * p + 1]);
    t[2 * p + 1] = _mm256_unpackhi_epi32(r[2 * p], r[2 * p + 1]);
  }
  // u[4q + m], 128-bit lane L: dword 4L + m of rows 4q .. 4q + 3.
  for (int q = 0; q < 2; ++q) {
    u[4 * q + 0] = _mm256_unpacklo_epi64(t[4 * q], t[4 * q + 2]);
    u[4 * q + 1] = _mm256_unpackhi_epi64(t[4 * q], t[4 * q + 2]);
    u[4 * q + 2] = _mm256_unpacklo_epi64(t[4 * q + 1], t[4 * q + 3]);
    u[4 * q + 3] = _mm256_unpackhi_epi64(t[4 * q + 1], t[4 * q + 3]);
  }
  for (int m = 0; m < 4; ++m) {
    r[m] = _mm256_permute2x128_si256(u[m], u[4 + m], 0x20);
    r[4 + m] = _mm256_permute2x128_si256(u[m], u[4 + m], 0x31);
  }
}

template <ScaleType ST>
LMLAB_TARGET_AVX2 inline __m256 load_scales8(const void* p, int64_t i, int64_t n) {
  alignas(32) float buf[8] = {};
  if (n < 8) {
    for (int64_t k = 0; k < n; ++k) buf[k] = scale_at<ST>(p, i + k);
    return _mm256_load_ps(buf);
  }
  if constexpr (ST == ScaleType::f32) {
    return _mm256_loadu_ps(static_cast<const float*>(p) + i);
  } else {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(p) + i));
    if constexpr (ST == ScaleType::f16) return _mm256_cvtph_ps(h);
    else return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
}

// As scale_table16 for an 8-row block: f32 [G][8].
template <ScaleType ST>
LMLAB_TARGET_AVX2 void scale_table8(const AffineWeight& w, const int64_t* rows, float* st, float* bt) {
  const int64_t G = w.groups_per_row();
  for (int which = 0; which < 2; ++which) {
    const void* src = which == 0 ? w.scales : w.biases;
    float* dst = which == 0 ? st : bt;
    for (int64_t g0 = 0; g0 < G; g0 += 8) {
      const int64_t ng = std::min<int64_t>(8, G - g0);
      __m256i v[8];
#pragma GCC unroll 16
      for (int l = 0; l < 8; ++l) v[l] = _mm256_castps_si256(load_scales8<ST>(src, rows[l] * G + g0, ng));
      transpose8(v);
#pragma GCC unroll 8
      for (int i = 0; i < 8; ++i) _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + (g0 + i) * 8), v[i]);  // padded
    }
  }
}

// As tile_vnni for an 8-row block; a "half" is 32 bytes of a row (64 values, 2 activation blocks).
template <int T>
LMLAB_TARGET_AVX2 void tile_avx2(const uint8_t* const* rows, int64_t rb, int nr, const float* st, const float* bt,
                                 const Packed& p, int64_t bpg, const int8_t* xq, const float* d, const float* xg,
                                 float* y, int64_t ldy) {
  constexpr int64_t kHalf = kChunkBytes / 2;
  const int64_t halves = (rb + kHalf - 1) / kHalf, nb = p.nb, ldx = p.ldx, G = p.G;
  // Row bytes are whole u32 words, so the last half is loaded a word at a time under a mask.
  const int64_t tail_words = (rb - (halves - 1) * kHalf) / 4;
  const __m256i tail = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(tail_words)),
                                          _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  const __m256i nib = _mm256_set1_epi8(0x0f);
  __m256 acc[T];
#pragma GCC unroll 16
  for (int t = 0; t < T; ++t) acc[t] = _mm256_setzero_ps();
  for (int64_t h = 0; h < halves; ++h) {
    __m256i wt[8];
#pragma GCC unroll 16
    for (int l = 0; l < 8; ++l) {
      const auto* wp = rows[l] + h * kHalf;
      if (h % 2 == 0) _mm_prefetch(reinterpret_cast<const char*>(wp + kPrefetchChunks * kChunkBytes), _MM_HINT_T0);
      wt[l] = h + 1 < halves ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wp))
                             : _mm256_maskload_epi32(reinterpret_cast<const int*>(wp), tail);
    }
    transpose8(wt);
#pragma GCC unroll 16
    for (int j = 0; j < 2; ++j) {
      const int64_t b = 2 * h + j;
      if (b >= nb) break;
      const int64_t g = b / bpg;
      const __m256 sv = _mm256_loadu_ps(st + g * 8);
      if (b % bpg == 0) {
        const __m256 bv = _mm256_loadu_ps(bt + g * 8);
#pragma GCC unroll 16
        for (int t = 0; t < T; ++t) acc[t] = _mm256_fmadd_ps(bv, _mm256_set1_ps(xg[t * G + g]), acc[t]);
      }
      __m256i lo[4], hi[4];
#pragma GCC unroll 16
      for (int i = 0; i < 4; ++i) {
        lo[i] = _mm256_and_si256(wt[4 * j + i], nib);
        hi[i] = _mm256_and_si256(_mm256_srli_epi16(wt[4 * j + i], 4), nib);
      }
      block_dot_avx2<T>(lo, hi, xq, ldx, b, sv, d, nb, acc);
    }
  }
  store_rows_avx2<T>(acc, nr, y, ldy);
}

// ------------------------------------------------------------------------------------------- driver

using TileFn = void (*)(const uint8_t* const*, int64_t, int, const float*, const float*, const Packed&, int64_t,
                        const int8_t*, const float*, const float*, float*, int64_t);

template <bool VNNI>
TileFn tile_for(int T) {
  static constexpr TileFn kVnni[] = {nullptr, tile_vnni<1>, tile_vnni<2>, tile_vnni<3>, tile_vnni<4>,
                                     tile_vnni<5>, tile_vnni<6>, tile_vnni<7>, tile_vnni<8>};
  static constexpr TileFn kAvx2[] = {nullptr, tile_avx2<1>, tile_avx2<2>, tile_avx2<3>, tile_avx2<4>,
                                     tile_avx2<5>, tile_avx2<6>, tile_avx2<7>, tile_avx2<8>};
  return VNNI ? kVnni[T] : kAvx2[T];
}

using TableFn = void (*)(const AffineWeight&, const int64_t*, float*, float*);

template <bool VNNI>
TableFn table_for(ScaleType st) {
  switch (st) {
    case ScaleType::f32: return VNNI ? &scale_table16<ScaleType::f32> : &scale_table8<ScaleType::f32>;
    case ScaleType::f16: return VNNI ? &scale_table16<ScaleType::f16> : &scale_table8<ScaleType::f16>;
    case ScaleType::bf16: return VNNI ? &scale_table16<ScaleType::bf16> : &scale_table8<ScaleType::bf16>;
  }
  return nullptr;
}

// Row blocks [blk0, blk1) of R rows, all tokens.
template <bool VNNI>
void rows_vector(const AffineWeight& w, const I8Activations& x, const Packed& p, float* y, int64_t blk0, int64_t blk1) {
  constexpr int R = VNNI ? 16 : 8;
  const int64_t rb = w.words_per_row() * 4, bpg = w.group_size / kI8Block;
  const auto* base = reinterpret_cast<const uint8_t*>(w.packed);
  const TableFn table = table_for<VNNI>(w.scale_type);
  thread_local std::vector<float> st, bt;
  const int64_t padded = (p.G + R - 1) / R * R;  // the table builders write whole R-group steps
  st.resize(static_cast<size_t>(padded * R));
  bt.resize(static_cast<size_t>(padded * R));
  for (int64_t blk = blk0; blk < blk1; ++blk) {
    const int64_t r0 = blk * R;
    const int nr = static_cast<int>(std::min<int64_t>(R, w.rows - r0));
    int64_t idx[R];
    const uint8_t* rows[R];
    for (int l = 0; l < R; ++l) {
      idx[l] = std::min(r0 + l, w.rows - 1);  // rows past the matrix repeat its last row
      rows[l] = base + idx[l] * rb;
    }
    table(w, idx, st.data(), bt.data());
    // The next block's scales and biases, read while this block's tiles run (else each block's table waits on
    // memory: 30% of a decode matvec).
    const int64_t sb = w.scale_type == ScaleType::f32 ? 4 : 2, span = R * p.G * sb;
    const int64_t next = std::min(r0 + R, w.rows - 1) * p.G * sb;
    for (int64_t off = 0; off < span; off += 64) {
      _mm_prefetch(static_cast<const char*>(w.scales) + next + off, _MM_HINT_T0);
      _mm_prefetch(static_cast<const char*>(w.biases) + next + off, _MM_HINT_T0);
    }
    for (int64_t t = 0; t < x.n; t += kMaxTokens) {
      const int T = static_cast<int>(std::min<int64_t>(kMaxTokens, x.n - t));
      tile_for<VNNI>(T)(rows, rb, nr, st.data(), bt.data(), p, bpg, p.q.data() + t * p.ldx, x.d.data() + t * p.nb,
                        p.xg.data() + t * p.G, y + t * w.rows + r0, w.rows);
    }
  }
}
#endif  // LMLAB_X86

// ------------------------------------------------------------------------------------------- scalar

void rows_scalar(const AffineWeight& w, const I8Activations& x, float* y, int64_t r0, int64_t r1) {
  const int64_t G = w.groups_per_row(), gs = w.group_size, nb = x.blocks_per_row(), rb = w.words_per_row() * 4;
  for (int64_t r = r0; r < r1; ++r) {
    const auto* row = reinterpret_cast<const uint8_t*>(w.packed) + r * rb;
    for (int64_t t = 0; t < x.n; ++t) {
      const int16_t* xq = x.q.data() + t * w.cols;  // 256 * hi + lo: the same integer dots
      float acc = 0.0f;
      for (int64_t g = 0; g < G; ++g) {
        float qx = 0.0f, xs = 0.0f;
        for (int64_t b = g * gs / kI8Block; b < (g + 1) * gs / kI8Block; ++b) {
          int32_t dot = 0;
          for (int64_t c = b * kI8Block; c < (b + 1) * kI8Block; ++c) dot += ((row[c / 2] >> (4 * (c % 2))) & 15) * xq[c];
          const float d = x.d[t * nb + b];
          qx += d * static_cast<float>(dot);
          xs += d * static_cast<float>(x.sums[t * nb + b]);
        }
        acc += affine_scale_value(w.scales, w.scale_type, r * G + g) * qx +
               affine_scale_value(w.biases, w.scale_type, r * G + g) * xs;
      }
      y[t * w.rows + r] = acc;
    }
  }
}

}  // namespace

void pack_activations(int64_t cols, int64_t group_size, const I8Activations& x, Packed& p) {
  const int64_t nb = x.blocks_per_row(), bpg = group_size / kI8Block;
  p.chunks = (cols + kChunkValues - 1) / kChunkValues;
  p.ldx = p.chunks * 2 * kChunkValues;
  p.nb = nb;
  p.G = cols / group_size;
  p.q.resize(static_cast<size_t>(x.n * p.ldx));
  p.xg.resize(static_cast<size_t>(x.n * p.G));
  for (int64_t t = 0; t < x.n; ++t) {
    int8_t* dst = p.q.data() + t * p.ldx;
#if LMLAB_X86
    split_avx2(x.q.data() + t * cols, dst, nb);  // only called on the vector paths
#endif
    std::fill(dst + 2 * cols, dst + p.ldx, int8_t{0});
    for (int64_t g = 0; g < p.G; ++g) {
      float s = 0.0f;
      for (int64_t b = g * bpg; b < (g + 1) * bpg; ++b) s += x.d[t * nb + b] * static_cast<float>(x.sums[t * nb + b]);
      p.xg[t * p.G + g] = s;
    }
  }
}

}  // namespace lmlab::kernels::cpu

namespace lmlab::kernels {

bool int8_dot_enabled() {
  static const bool on = [] {
    const char* env = std::getenv("LMLAB_INT8_DOT");
    return !(env != nullptr && std::strcmp(env, "0") == 0);
  }();
  return on;
}

}  // namespace lmlab::kernels

namespace lmlab::kernels::cpu {

void matmul_affine_i8(const AffineWeight& w, const I8Activations& x, float* y) {
  if (w.rows <= 0 || x.n <= 0) return;
#if LMLAB_X86
  const Isa isa = active_isa();
  if (isa != Isa::scalar) {
    const bool vnni = isa == Isa::avx512 && has_avx512_vnni();
    const int64_t R = vnni ? 16 : 8, n_blocks = (w.rows + R - 1) / R;
    // A name for the caller's buffer: a lambda running on a worker would see the worker's own thread_local.
    thread_local Packed packed;
    Packed& p = packed;
    pack_activations(w.cols, w.group_size, x, p);
    ThreadPool::global().parallel_for(
        n_blocks,
        [&](int64_t b0, int64_t b1) {
          if (vnni) rows_vector<true>(w, x, p, y, b0, b1);
          else rows_vector<false>(w, x, p, y, b0, b1);
        },
        min_row_blocks(R, w.cols, x.n));
    return;
  }
#endif
  const int64_t n_blocks = (w.rows + 15) / 16;
  ThreadPool::global().parallel_for(
      n_blocks, [&](int64_t b0, int64_t b1) { rows_scalar(w, x, y, b0 * 16, std::min(w.rows, b1 * 16)); },
      min_row_blocks(16, w.cols, x.n));
}

void matmul_affine_int8(const MatmulAffineArgs& a) {
  thread_local I8Activations xq;
  quantize_i8(a.x, a.n, a.w.cols, xq);
  matmul_affine_i8(a.w, xq, a.y);
}

}  // namespace lmlab::kernels::cpu
