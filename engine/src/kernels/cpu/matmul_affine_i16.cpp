// Integer-dot affine matmul (see matmul_affine_i16.h for the arithmetic).
//
// Vector layout. A "chunk" is 64 bytes of a packed row: 128 values at 4 bits, 64 at 8 bits. Read as 32
// 16-bit words, word i holds J = 16 / bits consecutive values J*i .. J*i + J-1; shifting and masking the words
// gives J vectors of 32 int16 lanes, vector j holding the values J*i + j. The activations are stored once per
// call in that order (per chunk and j: the 32 values J*i + j, as int16), zero-padded to whole chunks, so
// vpdpwssd (int16 pairs -> int32) needs no shuffle: int32 lane m of a chunk, summed over the J vectors, covers
// the values [8m, 8m + 8) at 4 bits or [4m, 4m + 4) at 8 bits, within one 32-value activation block and one
// weight group. Per chunk and row the int32 lanes are converted once and multiplied by a per-lane scale
// s[g(m)] * xd[b(m)] (the weight scales of 16 groups live in a register, permuted into lanes by a per-call
// index table; the activation block scales are precomputed per lane). The AVX2 kernel takes each chunk as two
// 32-byte halves (int32 lanes 8h .. 8h+7 of the same tables) and vpmaddwd.
//
// Rows are split over threads in 4-row blocks; each block runs up to 4 (AVX-512) or 2 (AVX2) tokens at once,
// reusing the unpacked weight vectors, over 64-token blocks whose activations stay in L2.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/cpu/affine_scales.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/simd.h"
#include "kernels/matmul_affine_i16.h"
#include "util/half.h"
#include "util/thread_pool.h"

namespace lmlab::kernels::cpu {

namespace {

constexpr int64_t kChunkBytes = 64;
constexpr int64_t kTokenBlock = 64;


// ------------------------------------------------------------------------------------------- layout

// The activations in the kernels' order, plus the per-lane tables (see the file comment).
struct Packed {
  int64_t values_per_chunk = 0, chunks = 0, lane_values = 0, ldx = 0, G = 0;
  std::vector<int16_t> q;     // [n, ldx], ldx = chunks * values_per_chunk
  std::vector<float> dl;      // [n, chunks * 16]: xd of the block lane l lies in (0 past cols)
  std::vector<float> xsum;    // [n, G]: X[g] = sum_{b in g} xd[b] * sums[b]
  std::vector<int32_t> idx;   // [vectors per window, L]: group of lane l within its L-group window
  int64_t window_vectors = 0;
};

void pack_activations(const AffineWeight& w, const I16Activations& x, int lanes, Packed& p) {
  const int64_t V = w.bits == 4 ? 128 : 64, cols = w.cols, nb = x.blocks_per_row(), gs = w.group_size;
  p.values_per_chunk = V;
  p.chunks = (cols + V - 1) / V;
  p.lane_values = V / 16;
  p.ldx = p.chunks * V;
  p.G = w.groups_per_row();
  p.q.assign(static_cast<size_t>(x.n * p.ldx), 0);
  p.dl.assign(static_cast<size_t>(x.n * p.chunks * 16), 0.0f);
  p.xsum.assign(static_cast<size_t>(x.n * p.G), 0.0f);
  for (int64_t t = 0; t < x.n; ++t) {
    const int16_t* src = x.q.data() + t * cols;
    int16_t* dst = p.q.data() + t * p.ldx;
    const int64_t J = 16 / w.bits;  // values per 16-bit word; value J*i + j of a chunk goes to [j][i]
    for (int64_t c = 0; c < cols; ++c) dst[c / V * V + (c % J) * 32 + (c % V) / J] = src[c];
    for (int64_t l = 0; l < p.chunks * 16; ++l) {
      const int64_t b = l * p.lane_values / kI16Block;
      if (b < nb) p.dl[t * p.chunks * 16 + l] = x.d[t * nb + b];
    }
    for (int64_t b = 0; b < nb; ++b)
      p.xsum[t * p.G + b * kI16Block / gs] += x.d[t * nb + b] * static_cast<float>(x.sums[t * nb + b]);
  }
  // A window of `lanes` groups spans gs / lane_values vectors of `lanes` lanes.
  p.window_vectors = gs / p.lane_values;
  p.idx.resize(static_cast<size_t>(p.window_vectors * lanes));
  for (int64_t j = 0; j < p.window_vectors; ++j)
    for (int l = 0; l < lanes; ++l) p.idx[j * lanes + l] = static_cast<int32_t>((j * lanes + l) * p.lane_values / gs);
}

#if LMLAB_X86
// ------------------------------------------------------------------------------------------- AVX-512 VNNI

// The J = 16 / BITS int16 vectors of one 64-byte chunk (vector j: lanes i = value J*i + j).
template <int BITS>
LMLAB_TARGET_AVX512 inline void unpack_words512(__m512i wv, __m512i* q) {
  if constexpr (BITS == 4) {
    const __m512i m = _mm512_set1_epi16(0x0f);
    q[0] = _mm512_and_si512(wv, m);
    q[1] = _mm512_and_si512(_mm512_srli_epi16(wv, 4), m);
    q[2] = _mm512_and_si512(_mm512_srli_epi16(wv, 8), m);
    q[3] = _mm512_srli_epi16(wv, 12);
  } else {
    q[0] = _mm512_and_si512(wv, _mm512_set1_epi16(0xff));
    q[1] = _mm512_srli_epi16(wv, 8);
  }
}

// y[t * ldy + r] = sum over the row of s * xd * (q . xq), no bias term, for R rows x T tokens.
// w: first row's packed bytes (row stride rb), s: its scales (row stride G), xq / dl: first token's rows of
// Packed::q / dl (strides ldx / ldd).
template <int BITS, int R, int T, ScaleType ST>
LMLAB_TARGET_AVX512_VNNI void tile_vnni(const uint8_t* w, int64_t rb, const void* s, const Packed& p,
                                        const int16_t* xq, const float* dl, float* y, int64_t ldy) {
  constexpr int J = 16 / BITS;
  constexpr int64_t V = 32 * J;
  const int64_t chunks = p.chunks, G = p.G, ldx = p.ldx, ldd = chunks * 16;
  const int64_t tail_bytes = rb - (chunks - 1) * kChunkBytes;
  const __mmask64 tail = tail_bytes >= 64 ? ~__mmask64{0} : (__mmask64{1} << tail_bytes) - 1;
  __m512 acc[R][T];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int t = 0; t < T; ++t) acc[r][t] = _mm512_setzero_ps();
  int64_t k = 0;
  for (int64_t g0 = 0; k < chunks; g0 += 16) {
    const __mmask16 gm = simd::tail_mask16(std::min<int64_t>(16, G - g0));
    __m512 sw[R];
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) sw[r] = load_scales16<ST>(s, r * G + g0, gm);
    for (int64_t j = 0; j < p.window_vectors && k < chunks; ++j, ++k) {
      const __m512i ix = _mm512_loadu_si512(p.idx.data() + j * 16);
      const __mmask64 m = k + 1 < chunks ? ~__mmask64{0} : tail;
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        // The next row block's same chunk, one block ahead: the hardware prefetchers stop at 4 KiB pages, which
        // a 4-row block of a 2048-wide 4-bit matrix just fills, so each block would start cold.
        _mm_prefetch(reinterpret_cast<const char*>(w + (R + r) * rb + k * kChunkBytes), _MM_HINT_T0);
        __m512i q[J];
        unpack_words512<BITS>(_mm512_maskz_loadu_epi8(m, w + r * rb + k * kChunkBytes), q);
        const __m512 sl = _mm512_permutexvar_ps(ix, sw[r]);
#pragma GCC unroll 4
        for (int t = 0; t < T; ++t) {
          const int16_t* xt = xq + t * ldx + k * V;
          __m512i i = _mm512_madd_epi16(q[0], _mm512_loadu_si512(xt));
#pragma GCC unroll 4
          for (int v = 1; v < J; ++v) i = _mm512_dpwssd_epi32(i, q[v], _mm512_loadu_si512(xt + 32 * v));
          const __m512 sd = _mm512_mul_ps(sl, _mm512_loadu_ps(dl + t * ldd + k * 16));
          acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i), sd, acc[r][t]);
        }
      }
    }
  }
#pragma GCC unroll 4
  for (int t = 0; t < T; ++t) {
    if constexpr (R == 4) {
      _mm_storeu_ps(y + t * ldy, simd::hsum4(acc[0][t], acc[1][t], acc[2][t], acc[3][t]));
    } else {
      for (int r = 0; r < R; ++r) y[t * ldy + r] = _mm512_reduce_add_ps(acc[r][t]);
    }
  }
}

// ------------------------------------------------------------------------------------------- AVX2

template <int BITS>
LMLAB_TARGET_AVX2 inline void unpack_words256(__m256i wv, __m256i* q) {
  if constexpr (BITS == 4) {
    const __m256i m = _mm256_set1_epi16(0x0f);
    q[0] = _mm256_and_si256(wv, m);
    q[1] = _mm256_and_si256(_mm256_srli_epi16(wv, 4), m);
    q[2] = _mm256_and_si256(_mm256_srli_epi16(wv, 8), m);
    q[3] = _mm256_srli_epi16(wv, 12);
  } else {
    q[0] = _mm256_and_si256(wv, _mm256_set1_epi16(0xff));
    q[1] = _mm256_srli_epi16(wv, 8);
  }
}

template <int BITS, int R, int T, ScaleType ST>
LMLAB_TARGET_AVX2 void tile_avx2(const uint8_t* w, int64_t rb, const void* s, const Packed& p, const int16_t* xq,
                                 const float* dl, float* y, int64_t ldy) {
  constexpr int J = 16 / BITS;
  constexpr int64_t V = 32 * J;
  constexpr int64_t kHalf = kChunkBytes / 2;
  const int64_t halves = (rb + kHalf - 1) / kHalf, G = p.G, ldx = p.ldx, ldd = p.chunks * 16;
  // Row bytes are whole u32 words, so the last half is loaded a word at a time under a mask.
  const int64_t tail_words = (rb - (halves - 1) * kHalf) / 4;
  const __m256i tail = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(tail_words)),
                                          _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  __m256 acc[R][T];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 2
    for (int t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_ps();
  int64_t h = 0;
  for (int64_t g0 = 0; h < halves; g0 += 8) {
    alignas(32) float sbuf[R][8] = {};
    for (int r = 0; r < R; ++r)
      for (int64_t g = g0; g < std::min<int64_t>(G, g0 + 8); ++g) sbuf[r][g - g0] = scale_at<ST>(s, r * G + g);
    for (int64_t j = 0; j < p.window_vectors && h < halves; ++j, ++h) {
      const __m256i ix = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p.idx.data() + j * 8));
      const int64_t xoff = (h / 2) * V + (h % 2) * 16;  // words 16 * (h % 2) .. of the chunk's vectors
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        const auto* wp = w + r * rb + h * kHalf;
        if (h % 2 == 0) _mm_prefetch(reinterpret_cast<const char*>(wp + R * rb), _MM_HINT_T0);  // as tile_vnni
        const __m256i wv = h + 1 < halves ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wp))
                                          : _mm256_maskload_epi32(reinterpret_cast<const int*>(wp), tail);
        __m256i q[J];
        unpack_words256<BITS>(wv, q);
        const __m256 sl = _mm256_permutevar8x32_ps(_mm256_load_ps(sbuf[r]), ix);
#pragma GCC unroll 2
        for (int t = 0; t < T; ++t) {
          const int16_t* xt = xq + t * ldx + xoff;
          __m256i i = _mm256_madd_epi16(q[0], _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xt)));
#pragma GCC unroll 4
          for (int v = 1; v < J; ++v)
            i = _mm256_add_epi32(i, _mm256_madd_epi16(q[v], _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xt + 32 * v))));
          const __m256 sd = _mm256_mul_ps(sl, _mm256_loadu_ps(dl + t * ldd + h * 8));
          acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i), sd, acc[r][t]);
        }
      }
    }
  }
#pragma GCC unroll 2
  for (int t = 0; t < T; ++t) {
    if constexpr (R == 4) {
      _mm_storeu_ps(y + t * ldy, simd::hsum4(acc[0][t], acc[1][t], acc[2][t], acc[3][t]));
    } else {
      for (int r = 0; r < R; ++r) y[t * ldy + r] = simd::hsum8(acc[r][t]);
    }
  }
}

// ------------------------------------------------------------------------------------------- drivers

// Rows [r0, r1) for one kernel family (VNNI = AVX-512 VNNI, else AVX2) and bit width.
template <bool VNNI, int BITS, ScaleType ST>
struct Driver {
  static constexpr int kMaxT = VNNI ? 4 : 2;

  template <int R, int T>
  static void tile(const uint8_t* w, int64_t rb, const void* s, const Packed& p, const int16_t* xq, const float* dl,
                   float* y, int64_t ldy) {
    if constexpr (VNNI) tile_vnni<BITS, R, T, ST>(w, rb, s, p, xq, dl, y, ldy);
    else tile_avx2<BITS, R, T, ST>(w, rb, s, p, xq, dl, y, ldy);
  }

  template <int R>
  static void tokens(const uint8_t* w, int64_t rb, const void* s, const Packed& p, int64_t t0, int64_t nt, float* y,
                     int64_t ldy) {
    const int64_t ldd = p.chunks * 16;
    int64_t t = t0;
    for (; t + kMaxT <= t0 + nt; t += kMaxT)
      tile<R, kMaxT>(w, rb, s, p, p.q.data() + t * p.ldx, p.dl.data() + t * ldd, y + t * ldy, ldy);
    const int64_t left = t0 + nt - t;
    const int16_t* xq = p.q.data() + t * p.ldx;
    const float* dl = p.dl.data() + t * ldd;
    if constexpr (kMaxT == 4) {
      if (left == 3) tile<R, 3>(w, rb, s, p, xq, dl, y + t * ldy, ldy);
      if (left == 2) tile<R, 2>(w, rb, s, p, xq, dl, y + t * ldy, ldy);
    }
    if (left == 1) tile<R, 1>(w, rb, s, p, xq, dl, y + t * ldy, ldy);
  }

  static void rows(const AffineWeight& w, const Packed& p, int64_t n, float* y, int64_t r0, int64_t r1) {
    const int64_t G = p.G, rb = w.words_per_row() * 4;
    const size_t sb = ST == ScaleType::f32 ? 4 : 2;
    const auto* base = reinterpret_cast<const uint8_t*>(w.packed);
    const auto* s = static_cast<const uint8_t*>(w.scales);
    const auto* b = static_cast<const uint8_t*>(w.biases);
    for (int64_t t0 = 0; t0 < n; t0 += kTokenBlock) {
      const int64_t nt = std::min(kTokenBlock, n - t0);
      for (int64_t r = r0; r < r1;) {
        const int R = r + 4 <= r1 ? 4 : 1;
        if (R == 4) tokens<4>(base + r * rb, rb, s + r * G * sb, p, t0, nt, y + r, w.rows);
        else tokens<1>(base + r * rb, rb, s + r * G * sb, p, t0, nt, y + r, w.rows);
        for (int i = 0; i < R; ++i)
          for (int64_t t = t0; t < t0 + nt; ++t) {
            const void* bi = b + (r + i) * G * sb;
            const float* xs = p.xsum.data() + t * G;
            y[t * w.rows + r + i] += VNNI ? bias_dot_avx512<ST>(bi, xs, G) : bias_dot_avx2<ST>(bi, xs, G);
          }
        r += R;
      }
    }
  }
};

using RowsFn = void (*)(const AffineWeight&, const Packed&, int64_t, float*, int64_t, int64_t);

template <bool VNNI, int BITS>
RowsFn pick_scale(ScaleType st) {
  switch (st) {
    case ScaleType::f32: return &Driver<VNNI, BITS, ScaleType::f32>::rows;
    case ScaleType::f16: return &Driver<VNNI, BITS, ScaleType::f16>::rows;
    case ScaleType::bf16: return &Driver<VNNI, BITS, ScaleType::bf16>::rows;
  }
  return nullptr;
}

RowsFn pick_vector(Isa isa, int bits, ScaleType st, int* lanes) {
  const bool vnni = isa == Isa::avx512 && has_avx512_vnni();
  if (!vnni && isa == Isa::scalar) return nullptr;
  *lanes = vnni ? 16 : 8;
  if (vnni) return bits == 4 ? pick_scale<true, 4>(st) : pick_scale<true, 8>(st);
  return bits == 4 ? pick_scale<false, 4>(st) : pick_scale<false, 8>(st);
}
#endif  // LMLAB_X86

// ------------------------------------------------------------------------------------------- scalar

// Unpacked value c of a 4- or 8-bit row.
inline int32_t quant_value(const uint8_t* row, int bits, int64_t c) {
  return bits == 8 ? row[c] : (row[c / 2] >> (4 * (c % 2))) & 15;
}

void rows_scalar(const AffineWeight& w, const I16Activations& x, float* y, int64_t r0, int64_t r1) {
  const int64_t G = w.groups_per_row(), gs = w.group_size, nb = x.blocks_per_row(), rb = w.words_per_row() * 4;
  for (int64_t r = r0; r < r1; ++r) {
    const auto* row = reinterpret_cast<const uint8_t*>(w.packed) + r * rb;
    for (int64_t t = 0; t < x.n; ++t) {
      const int16_t* xq = x.q.data() + t * w.cols;
      float acc = 0.0f;
      for (int64_t g = 0; g < G; ++g) {
        float qx = 0.0f, xs = 0.0f;
        for (int64_t b = g * gs / kI16Block; b < (g + 1) * gs / kI16Block; ++b) {
          int32_t dot = 0;
          for (int64_t c = b * kI16Block; c < (b + 1) * kI16Block; ++c) dot += quant_value(row, w.bits, c) * xq[c];
          const float d = x.d[t * nb + b];
          qx += d * static_cast<float>(dot);
          xs += d * static_cast<float>(x.sums[t * nb + b]);
        }
        acc += affine_scale_value(w.scales, w.scale_type, r * G + g) * qx + affine_scale_value(w.biases, w.scale_type, r * G + g) * xs;
      }
      y[t * w.rows + r] = acc;
    }
  }
}

// Work per parallel chunk of 4-row blocks: at least ~64K multiply-adds.
int64_t min_row_blocks(int64_t cols, int64_t n) {
  return std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(1, 4 * cols * n));
}

}  // namespace

void matmul_affine_i16(const AffineWeight& w, const I16Activations& x, float* y) {
  if (w.rows <= 0 || x.n <= 0) return;
  const int64_t n_blocks = (w.rows + 3) / 4;
  const int64_t min_chunk = min_row_blocks(w.cols, x.n);
#if LMLAB_X86
  int lanes = 0;
  if (const RowsFn fast = pick_vector(active_isa(), w.bits, w.scale_type, &lanes)) {
    // A name for the caller's buffer: a lambda running on a worker would see the worker's own thread_local.
    thread_local Packed packed;
    Packed& p = packed;
    pack_activations(w, x, lanes, p);
    ThreadPool::global().parallel_for(
        n_blocks, [&](int64_t b0, int64_t b1) { fast(w, p, x.n, y, b0 * 4, std::min(w.rows, b1 * 4)); }, min_chunk);
    return;
  }
#endif
  ThreadPool::global().parallel_for(
      n_blocks, [&](int64_t b0, int64_t b1) { rows_scalar(w, x, y, b0 * 4, std::min(w.rows, b1 * 4)); }, min_chunk);
}

void matmul_affine_int(const MatmulAffineArgs& a) {
  thread_local I16Activations xq;
  quantize_i16(a.x, a.n, a.w.cols, xq);
  matmul_affine_i16(a.w, xq, a.y);
}

}  // namespace lmlab::kernels::cpu
