// Split-int8 4-bit affine matmul on weights repacked into 16-row panels (kernels/affine_panels.h). The same
// arithmetic, instructions and f32 operation order as the row-layout kernel (matmul_affine_i8.cpp), so the
// results are bit-identical to it on each ISA path; what changes is only where the bytes come from:
// - a 64-byte load at a group record's words + 64 i is already "dword i of the 16 rows" (no 16 x 16 transpose
//   per chunk), and the AVX2 kernel takes each 32-byte half (8 rows) of it (no 8 x 8 transpose);
// - the 16 rows' scales and biases are 16 contiguous stored values in the record (no per-call scale tables);
// - a panel is one sequential stream (records one after another) instead of 16 row streams plus two
//   scale streams, which the hardware prefetcher follows by itself.
// Panels are split over threads; each panel runs up to 8 tokens at once on the same loaded weight vectors.
#include <algorithm>
#include <cstring>

#include "kernels/affine_panels.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/matmul_affine_i8_pack.h"
#include "kernels/cpu/simd.h"
#include "kernels/matmul_affine_i8.h"
#include "util/thread_pool.h"

namespace lmlab::kernels::cpu {

namespace {

// Software prefetch distance in the panel's stream (bytes ahead of the word vector being read). On the 64 MB
// BM_batch_q4_int8_panels matrix (8192 x 16384), one token: 512 B 1.57 ms, 2 KB 1.37-1.39, 4 KB 1.18, 8 KB 1.06;
// 8 tokens 3.57-3.74 ms from 2 to 8 KB (5.1 at 512 B); the 0.9B synth's 6144 x 2048 the same at all four.
constexpr int64_t kPrefetchBytes = 8192;

#if LMLAB_X86
// ------------------------------------------------------------------------------------------- AVX-512 VNNI

// 16 stored scales (or biases) at p, 64-byte aligned, as f32 (exact conversions, as load_scales16's).
template <ScaleType ST>
LMLAB_TARGET_AVX512 inline __m512 load16(const uint8_t* p) {
  if constexpr (ST == ScaleType::f32) {
    return _mm512_load_ps(p);
  } else {
    const __m256i h = _mm256_load_si256(reinterpret_cast<const __m256i*>(p));
    if constexpr (ST == ScaleType::f16) return _mm512_cvtph_ps(h);
    else return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
}

// y[t * ldy + l] for rows l < nr of one panel and T tokens; xq / d / xg: the first token's rows of Packed::q,
// I8Activations::d and Packed::xg. The loop body is the row-layout tile_vnni's, block for block.
template <ScaleType ST, int T>
LMLAB_TARGET_AVX512_VNNI void tile_vnni(const AffinePanels& w, const uint8_t* panel, int nr, const Packed& p,
                                        const int8_t* xq, const float* d, const float* xg, float* y, int64_t ldy) {
  const int64_t G = p.G, nb = p.nb, ldx = p.ldx, bpg = w.group_size / kI8Block, rec = w.record_bytes;
  const int64_t wo = w.words_offset(), bo = kPanelRows * w.scale_bytes();
  const __m512i nib = _mm512_set1_epi8(0x0f);
  __m512 acc[T];
#pragma GCC unroll 16
  for (int t = 0; t < T; ++t) acc[t] = _mm512_setzero_ps();
  for (int64_t g = 0; g < G; ++g) {
    const uint8_t* r = panel + g * rec;
    const __m512 sv = load16<ST>(r), bv = load16<ST>(r + bo);
#pragma GCC unroll 16
    for (int t = 0; t < T; ++t) acc[t] = _mm512_fmadd_ps(bv, _mm512_set1_ps(xg[t * G + g]), acc[t]);
    for (int64_t j = 0; j < bpg; ++j) {
      const int64_t b = g * bpg + j;
      const uint8_t* wp = r + wo + j * 4 * 64;
      __m512i lo[4], hi[4];
#pragma GCC unroll 16
      for (int i = 0; i < 4; ++i) {
        _mm_prefetch(reinterpret_cast<const char*>(wp + i * 64 + kPrefetchBytes), _MM_HINT_T0);
        const __m512i v = _mm512_load_si512(wp + i * 64);
        lo[i] = _mm512_and_si512(v, nib);
        hi[i] = _mm512_and_si512(_mm512_srli_epi16(v, 4), nib);
      }
      block_dot_vnni<T>(lo, hi, xq, ldx, b, sv, d, nb, acc);
    }
  }
  const __mmask16 out = simd::tail_mask16(nr);
#pragma GCC unroll 16
  for (int t = 0; t < T; ++t) _mm512_mask_storeu_ps(y + t * ldy, out, acc[t]);
}

// ------------------------------------------------------------------------------------------- AVX2

// 8 stored scales (or biases) at p, 32-byte aligned, as f32.
template <ScaleType ST>
LMLAB_TARGET_AVX2 inline __m256 load8(const uint8_t* p) {
  if constexpr (ST == ScaleType::f32) {
    return _mm256_load_ps(reinterpret_cast<const float*>(p));
  } else {
    const __m128i h = _mm_load_si128(reinterpret_cast<const __m128i*>(p));
    if constexpr (ST == ScaleType::f16) return _mm256_cvtph_ps(h);
    else return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
}

// Half `half` (rows 8 half .. 8 half + 7) of one panel: the row-layout tile_avx2's body on 32-byte vectors.
template <ScaleType ST, int T>
LMLAB_TARGET_AVX2 void tile_avx2(const AffinePanels& w, const uint8_t* panel, int half, int nr, const Packed& p,
                                 const int8_t* xq, const float* d, const float* xg, float* y, int64_t ldy) {
  const int64_t G = p.G, nb = p.nb, ldx = p.ldx, bpg = w.group_size / kI8Block, rec = w.record_bytes;
  const int64_t sb = w.scale_bytes(), wo = w.words_offset() + 32 * half, so = 8 * half * sb, bo = so + kPanelRows * sb;
  const __m256i nib = _mm256_set1_epi8(0x0f);
  __m256 acc[T];
#pragma GCC unroll 16
  for (int t = 0; t < T; ++t) acc[t] = _mm256_setzero_ps();
  for (int64_t g = 0; g < G; ++g) {
    const uint8_t* r = panel + g * rec;
    const __m256 sv = load8<ST>(r + so), bv = load8<ST>(r + bo);
#pragma GCC unroll 16
    for (int t = 0; t < T; ++t) acc[t] = _mm256_fmadd_ps(bv, _mm256_set1_ps(xg[t * G + g]), acc[t]);
    for (int64_t j = 0; j < bpg; ++j) {
      const int64_t b = g * bpg + j;
      const uint8_t* wp = r + wo + j * 4 * 64;
      __m256i lo[4], hi[4];
#pragma GCC unroll 16
      for (int i = 0; i < 4; ++i) {
        _mm_prefetch(reinterpret_cast<const char*>(wp + i * 64 + kPrefetchBytes), _MM_HINT_T0);
        const __m256i v = _mm256_load_si256(reinterpret_cast<const __m256i*>(wp + i * 64));
        lo[i] = _mm256_and_si256(v, nib);
        hi[i] = _mm256_and_si256(_mm256_srli_epi16(v, 4), nib);
      }
      block_dot_avx2<T>(lo, hi, xq, ldx, b, sv, d, nb, acc);
    }
  }
  store_rows_avx2<T>(acc, nr, y, ldy);
}

// ------------------------------------------------------------------------------------------- driver

using VnniFn = void (*)(const AffinePanels&, const uint8_t*, int, const Packed&, const int8_t*, const float*,
                        const float*, float*, int64_t);
using Avx2Fn = void (*)(const AffinePanels&, const uint8_t*, int, int, const Packed&, const int8_t*, const float*,
                        const float*, float*, int64_t);

template <ScaleType ST>
VnniFn vnni_tile(int T) {
  static constexpr VnniFn k[] = {nullptr, tile_vnni<ST, 1>, tile_vnni<ST, 2>, tile_vnni<ST, 3>, tile_vnni<ST, 4>,
                                 tile_vnni<ST, 5>, tile_vnni<ST, 6>, tile_vnni<ST, 7>, tile_vnni<ST, 8>};
  return k[T];
}
template <ScaleType ST>
Avx2Fn avx2_tile(int T) {
  static constexpr Avx2Fn k[] = {nullptr, tile_avx2<ST, 1>, tile_avx2<ST, 2>, tile_avx2<ST, 3>, tile_avx2<ST, 4>,
                                 tile_avx2<ST, 5>, tile_avx2<ST, 6>, tile_avx2<ST, 7>, tile_avx2<ST, 8>};
  return k[T];
}

// Prefill (many tokens): the packed activations of kTokenBlock tokens (2 bytes per value: 256 KB at 2048 columns)
// stay in L2 while the thread's panels pass over them; without the blocking every panel re-read all of X (2-6 MB at
// 512 tokens). 0.5 GB 4-bit synth, 512-token prefill: 194-203 tok/s unblocked, 215-238 at 64 (dev VM, noisy).
constexpr int64_t kTokenBlock = 64;

// Panels [p0, p1), all tokens.
template <ScaleType ST>
void panels_vector(bool vnni, const AffinePanels& w, const I8Activations& x, const Packed& p, float* y, int64_t p0,
                   int64_t p1) {
  for (int64_t t0 = 0; t0 < x.n; t0 += kTokenBlock)
  for (int64_t pi = p0; pi < p1; ++pi) {
    const uint8_t* panel = w.record(pi, 0);
    const int64_t r0 = pi * kPanelRows;
    const int nr = static_cast<int>(std::min<int64_t>(kPanelRows, w.rows - r0));
    for (int64_t t = t0; t < std::min(x.n, t0 + kTokenBlock); t += kI8MaxTokens) {
      const int T = static_cast<int>(std::min<int64_t>(kI8MaxTokens, x.n - t));
      const int8_t* xq = p.q.data() + t * p.ldx;
      const float *d = x.d.data() + t * p.nb, *xg = p.xg.data() + t * p.G;
      float* yt = y + t * w.rows + r0;
      if (vnni) {
        vnni_tile<ST>(T)(w, panel, nr, p, xq, d, xg, yt, w.rows);
      } else {
        for (int h = 0; h < 2 && 8 * h < nr; ++h)
          avx2_tile<ST>(T)(w, panel, h, std::min(8, nr - 8 * h), p, xq, d, xg, yt + 8 * h, w.rows);
      }
    }
  }
}
#endif  // LMLAB_X86

// ------------------------------------------------------------------------------------------- scalar

// The row-layout rows_scalar, reading row r's words and scales from its panel.
void rows_scalar(const AffinePanels& w, const I8Activations& x, float* y, int64_t r0, int64_t r1) {
  const int64_t G = w.groups, gs = w.group_size, nb = x.blocks_per_row(), sb = w.scale_bytes();
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t pi = r / kPanelRows, l = r % kPanelRows;
    for (int64_t t = 0; t < x.n; ++t) {
      const int16_t* xq = x.q.data() + t * w.cols;  // 256 * hi + lo: the same integer dots
      float acc = 0.0f;
      for (int64_t g = 0; g < G; ++g) {
        const uint8_t* rec = w.record(pi, g);
        const auto* words = reinterpret_cast<const uint32_t*>(rec + w.words_offset());
        float qx = 0.0f, xs = 0.0f;
        for (int64_t b = g * gs / kI8Block; b < (g + 1) * gs / kI8Block; ++b) {
          int32_t dot = 0;
          for (int64_t c = b * kI8Block; c < (b + 1) * kI8Block; ++c) {
            const int64_t k = c - g * gs;  // value k of the group: word k / 8, nibble k % 8
            dot += static_cast<int32_t>((words[(k / 8) * kPanelRows + l] >> (4 * (k % 8))) & 15) * xq[c];
          }
          const float d = x.d[t * nb + b];
          qx += d * static_cast<float>(dot);
          xs += d * static_cast<float>(x.sums[t * nb + b]);
        }
        const float s = affine_scale_value(rec, w.scale_type, l);
        const float bias = affine_scale_value(rec + kPanelRows * sb, w.scale_type, l);
        acc += s * qx + bias * xs;
      }
      y[t * w.rows + r] = acc;
    }
  }
}

}  // namespace

void matmul_affine_i8_panels(const AffinePanels& w, const I8Activations& x, float* y) {
  if (w.rows <= 0 || x.n <= 0) return;
#if LMLAB_X86
  const Isa isa = active_isa();
  if (isa != Isa::scalar) {
    const bool vnni = isa == Isa::avx512 && has_avx512_vnni();
    // A name for the caller's buffer: a lambda running on a worker would see the worker's own thread_local.
    thread_local Packed packed;
    Packed& p = packed;
    pack_activations(w.cols, w.group_size, x, p);
    ThreadPool::global().parallel_for(
        w.panels,
        [&](int64_t p0, int64_t p1) {
          switch (w.scale_type) {
            case ScaleType::f32: panels_vector<ScaleType::f32>(vnni, w, x, p, y, p0, p1); break;
            case ScaleType::f16: panels_vector<ScaleType::f16>(vnni, w, x, p, y, p0, p1); break;
            case ScaleType::bf16: panels_vector<ScaleType::bf16>(vnni, w, x, p, y, p0, p1); break;
          }
        },
        min_row_blocks(kPanelRows, w.cols, x.n));
    return;
  }
#endif
  ThreadPool::global().parallel_for(
      w.panels,
      [&](int64_t p0, int64_t p1) { rows_scalar(w, x, y, p0 * kPanelRows, std::min(w.rows, p1 * kPanelRows)); },
      min_row_blocks(kPanelRows, w.cols, x.n));
}

void matmul_affine_int8_panels(const AffinePanels& w, const float* x, float* y, int64_t n) {
  thread_local I8Activations xq;
  quantize_i8(x, n, w.cols, xq);
  matmul_affine_i8_panels(w, xq, y);
}

}  // namespace lmlab::kernels::cpu
