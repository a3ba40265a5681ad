// TurboQuant attention kernels (see tq_kernels.h). Each ISA has the same four functions:
//   decode      b-bit codes -> values by a table lookup: the table is the record's codebook scaled by
//               its norm (lloyd_max) or min + scale * k (affine), so no per-coordinate multiply remains, and
//               vpermps picks table[idx] for 16 lanes (AVX2: two vpermps + a blend for 8 lanes); 5-bit codes
//               index 32 entries: vpermt2ps over two tables (AVX2: four vpermps + three blends). Indices: 4-bit
//               nibbles are one broadcast uint64 shifted per lane (3 instructions per 16 coordinates); 2- and
//               3-bit planar codes are OR-ed together from one uint16 lane mask per plane. QJL signs become
//               +-kappa by one masked blend per 16 coordinates.
//   scores      s = Q . T^T over the block, 4 query rows x 4 keys register-blocked (AVX-512).
//   accumulate  A = diag(alpha) A + P . T, 4 rows x 32 columns register-blocked (AVX-512).
//   exp_sum     e^(s - m), shared with the f32 attention (kernels/cpu/exp_sum.h).
// The f16 baseline's records are plain fp16 rows: decode is one vcvtph2ps per 16 (AVX2: 8) coordinates.
#include "kv/turboquant/tq_kernels.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/cpu/isa.h"
#include "kernels/cpu/exp_sum.h"
#include "kernels/cpu/simd.h"
#include "util/half.h"

namespace lmlab::turboquant {

namespace {

using kernels::cpu::Isa;

// ------------------------------------------------------------------------------------------- scalar

void decode_scalar(const TqCodec& codec, const uint8_t* rec, int64_t rec_stride, int64_t nb, float* tile, int64_t ldt) {
  for (int64_t j = 0; j < nb; ++j) codec.decode_row(rec + j * rec_stride, tile + j * ldt);
}

void scores_scalar(const float* q, int64_t ldq, int64_t nr, const float* t, int64_t ldt, int64_t nb, int64_t len,
                   float* s, int64_t lds) {
  for (int64_t r = 0; r < nr; ++r)
    for (int64_t j = 0; j < nb; ++j) {
      const float* a = q + r * ldq;
      const float* b = t + j * ldt;
      float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
      for (int64_t i = 0; i < len; i += 4) {
        s0 += a[i] * b[i];
        s1 += a[i + 1] * b[i + 1];
        s2 += a[i + 2] * b[i + 2];
        s3 += a[i + 3] * b[i + 3];
      }
      s[r * lds + j] = (s0 + s1) + (s2 + s3);
    }
}

void accumulate_scalar(float* acc, int64_t lda, int64_t nr, const float* alpha, const float* p, int64_t ldp,
                       const float* t, int64_t ldt, int64_t nb, int64_t len) {
  for (int64_t r = 0; r < nr; ++r) {
    float* a = acc + r * lda;
    if (alpha[r] != 1.0f)
      for (int64_t i = 0; i < len; ++i) a[i] *= alpha[r];
    for (int64_t j = 0; j < nb; ++j) {
      const float w = p[r * ldp + j];
      if (w == 0.0f) continue;
      const float* tj = t + j * ldt;
      for (int64_t i = 0; i < len; ++i) a[i] += w * tj[i];
    }
  }
}

float max_scalar(const float* s, int64_t n) {
  float m = s[0];
  for (int64_t j = 1; j < n; ++j) m = std::max(m, s[j]);
  return m;
}

#if LMLAB_X86
namespace simd = kernels::cpu::simd;

// ------------------------------------------------------------------------------------------- AVX-512

LMLAB_TARGET_AVX512 inline float f16c_avx512(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

// Codes of 16 coordinates -> table indices in the low BITS bits of each 32-bit lane.
template <int BITS>
LMLAB_TARGET_AVX512 inline __m512i code_lanes_avx512(const uint8_t* codes, int64_t plane_bytes, int64_t c) {
  if constexpr (BITS == 4) {
    // One uint64 of nibbles (pack.h): broadcast, then lane l shifts its half right by 4 (l / 2).
    const __m512i shifts = _mm512_setr_epi32(0, 0, 4, 4, 8, 8, 12, 12, 16, 16, 20, 20, 24, 24, 28, 28);
    int64_t w;
    std::memcpy(&w, codes + 8 * c, 8);
    return _mm512_srlv_epi32(_mm512_set1_epi64(w), shifts);
  } else {
    // Planar: one uint16 lane mask per plane.
    __m512i idx = _mm512_setzero_si512();
    for (int p = 0; p < BITS; ++p) {
      uint16_t m;
      std::memcpy(&m, codes + p * plane_bytes + 2 * c, 2);
      idx = _mm512_mask_or_epi32(idx, m, idx, _mm512_set1_epi32(1 << p));
    }
    return idx;
  }
}

template <int BITS>
LMLAB_TARGET_AVX512 void decode_table_avx512(const TqCodec& codec, const uint8_t* rec, int64_t rec_stride, int64_t nb,
                                             float* tile, int64_t ldt) {
  const TqFormat& f = codec.format();
  const int64_t g = f.group_dim, d = f.head_dim(), pb = g / 8, gb = f.group_bytes(), so = f.scalar_offset();
  const bool affine = f.scheme == TqScheme::affine;
  const __m512 iota = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  // Centroids 0..15 (and 16..31 for 5-bit codes).
  const float* cb = affine ? nullptr : codec.codebook()->centroids.data();
  const __m512 cent = affine ? iota
                             : _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << std::min(16, 1 << BITS)) - 1u), cb);
  const __m512 cent_hi = BITS == 5 ? _mm512_loadu_ps(cb + 16) : _mm512_setzero_ps();
  for (int64_t j = 0; j < nb; ++j) {
    for (int64_t gi = 0; gi < f.n_groups; ++gi) {
      const uint8_t* in = rec + j * rec_stride + gi * gb;
      const float a = f16c_avx512(in + so), b = f.n_scalars() > 1 ? f16c_avx512(in + so + 2) : 0.0f;
      const __m512 table =
          affine ? _mm512_fmadd_ps(_mm512_set1_ps(a), iota, _mm512_set1_ps(b)) : _mm512_mul_ps(_mm512_set1_ps(a), cent);
      float* out = tile + j * ldt + gi * g;
      if constexpr (BITS == 5) {
        const __m512 table_hi = _mm512_mul_ps(_mm512_set1_ps(a), cent_hi);
        for (int64_t c = 0; c < g / 16; ++c)
          _mm512_storeu_ps(out + 16 * c, _mm512_permutex2var_ps(table, code_lanes_avx512<5>(in, pb, c), table_hi));
      } else {
        for (int64_t c = 0; c < g / 16; ++c)
          _mm512_storeu_ps(out + 16 * c, _mm512_permutexvar_ps(code_lanes_avx512<BITS>(in, pb, c), table));
      }
      if (f.qjl) {
        const float kappa = a * b * static_cast<float>(kSqrtHalfPi / static_cast<double>(g));
        const __m512 pos = _mm512_set1_ps(kappa), neg = _mm512_set1_ps(-kappa);
        const uint8_t* signs = in + f.code_bytes();
        float* qout = tile + j * ldt + d + gi * g;
        for (int64_t c = 0; c < g / 16; ++c) {
          uint16_t m;
          std::memcpy(&m, signs + 2 * c, 2);
          _mm512_storeu_ps(qout + 16 * c, _mm512_mask_blend_ps(m, neg, pos));
        }
      }
    }
  }
}

LMLAB_TARGET_AVX512 void decode_u8_avx512(const TqCodec& codec, const uint8_t* rec, int64_t rec_stride, int64_t nb,
                                          float* tile, int64_t ldt) {
  const TqFormat& f = codec.format();
  const int64_t g = f.group_dim, gb = f.group_bytes(), so = f.scalar_offset();
  for (int64_t j = 0; j < nb; ++j)
    for (int64_t gi = 0; gi < f.n_groups; ++gi) {
      const uint8_t* in = rec + j * rec_stride + gi * gb;
      const __m512 scale = _mm512_set1_ps(f16c_avx512(in + so)), mn = _mm512_set1_ps(f16c_avx512(in + so + 2));
      float* out = tile + j * ldt + gi * g;
      for (int64_t c = 0; c < g; c += 16) {
        const __m512 v =
            _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(in + c))));
        _mm512_storeu_ps(out + c, _mm512_fmadd_ps(scale, v, mn));
      }
    }
}

LMLAB_TARGET_AVX512 void decode_f16_avx512(const TqCodec& codec, const uint8_t* rec, int64_t rec_stride, int64_t nb,
                                           float* tile, int64_t ldt) {
  const int64_t d = codec.format().head_dim();  // f16 records are the d values, no scalars
  for (int64_t j = 0; j < nb; ++j)
    for (int64_t c = 0; c < d; c += 16)
      _mm512_storeu_ps(tile + j * ldt + c,
                       _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(rec + j * rec_stride + 2 * c))));
}

void decode_avx512(const TqCodec& codec, const uint8_t* rec, int64_t rec_stride, int64_t nb, float* tile, int64_t ldt) {
  switch (codec.format().bits) {
    case 2: return decode_table_avx512<2>(codec, rec, rec_stride, nb, tile, ldt);
    case 3: return decode_table_avx512<3>(codec, rec, rec_stride, nb, tile, ldt);
    case 4: return decode_table_avx512<4>(codec, rec, rec_stride, nb, tile, ldt);
    case 5: return decode_table_avx512<5>(codec, rec, rec_stride, nb, tile, ldt);
    case 8: return decode_u8_avx512(codec, rec, rec_stride, nb, tile, ldt);
    case 16: return decode_f16_avx512(codec, rec, rec_stride, nb, tile, ldt);
    default: return decode_scalar(codec, rec, rec_stride, nb, tile, ldt);
  }
}

template <int NR>
LMLAB_TARGET_AVX512 void scores_rows_avx512(const float* q, int64_t ldq, const float* t, int64_t ldt, int64_t nb,
                                            int64_t len, float* s, int64_t lds) {
  int64_t j = 0;
  for (; j + 4 <= nb; j += 4) {
    const float* t0 = t + j * ldt;
    __m512 acc[NR][4];
    for (int r = 0; r < NR; ++r)
      for (int k = 0; k < 4; ++k) acc[r][k] = _mm512_setzero_ps();
    for (int64_t i = 0; i < len; i += 16) {
      const __m512 k0 = _mm512_loadu_ps(t0 + i), k1 = _mm512_loadu_ps(t0 + ldt + i);
      const __m512 k2 = _mm512_loadu_ps(t0 + 2 * ldt + i), k3 = _mm512_loadu_ps(t0 + 3 * ldt + i);
      for (int r = 0; r < NR; ++r) {
        const __m512 qv = _mm512_loadu_ps(q + r * ldq + i);
        acc[r][0] = _mm512_fmadd_ps(qv, k0, acc[r][0]);
        acc[r][1] = _mm512_fmadd_ps(qv, k1, acc[r][1]);
        acc[r][2] = _mm512_fmadd_ps(qv, k2, acc[r][2]);
        acc[r][3] = _mm512_fmadd_ps(qv, k3, acc[r][3]);
      }
    }
    for (int r = 0; r < NR; ++r)
      _mm_storeu_ps(s + r * lds + j, simd::hsum4(acc[r][0], acc[r][1], acc[r][2], acc[r][3]));
  }
  for (; j < nb; ++j) {
    const float* tj = t + j * ldt;
    __m512 acc[NR];
    for (int r = 0; r < NR; ++r) acc[r] = _mm512_setzero_ps();
    for (int64_t i = 0; i < len; i += 16) {
      const __m512 kv = _mm512_loadu_ps(tj + i);
      for (int r = 0; r < NR; ++r) acc[r] = _mm512_fmadd_ps(_mm512_loadu_ps(q + r * ldq + i), kv, acc[r]);
    }
    for (int r = 0; r < NR; ++r) s[r * lds + j] = _mm512_reduce_add_ps(acc[r]);
  }
}

LMLAB_TARGET_AVX512 void scores_avx512(const float* q, int64_t ldq, int64_t nr, const float* t, int64_t ldt, int64_t nb,
                                       int64_t len, float* s, int64_t lds) {
  int64_t r = 0;
  for (; r + 4 <= nr; r += 4) scores_rows_avx512<4>(q + r * ldq, ldq, t, ldt, nb, len, s + r * lds, lds);
  switch (nr - r) {
    case 3: scores_rows_avx512<3>(q + r * ldq, ldq, t, ldt, nb, len, s + r * lds, lds); break;
    case 2: scores_rows_avx512<2>(q + r * ldq, ldq, t, ldt, nb, len, s + r * lds, lds); break;
    case 1: scores_rows_avx512<1>(q + r * ldq, ldq, t, ldt, nb, len, s + r * lds, lds); break;
    default: break;
  }
}

template <int NR, int NC>  // NR rows x NC vectors of 16 columns
LMLAB_TARGET_AVX512 void accumulate_tile_avx512(float* acc, int64_t lda, const float* alpha, const float* p,
                                                int64_t ldp, const float* t, int64_t ldt, int64_t nb) {
  __m512 a[NR][NC];
  for (int r = 0; r < NR; ++r) {
    const __m512 al = _mm512_set1_ps(alpha[r]);
    for (int c = 0; c < NC; ++c) a[r][c] = _mm512_mul_ps(_mm512_loadu_ps(acc + r * lda + 16 * c), al);
  }
  for (int64_t j = 0; j < nb; ++j) {
    __m512 tv[NC];
    for (int c = 0; c < NC; ++c) tv[c] = _mm512_loadu_ps(t + j * ldt + 16 * c);
    for (int r = 0; r < NR; ++r) {
      const __m512 pj = _mm512_set1_ps(p[r * ldp + j]);
      for (int c = 0; c < NC; ++c) a[r][c] = _mm512_fmadd_ps(pj, tv[c], a[r][c]);
    }
  }
  for (int r = 0; r < NR; ++r)
    for (int c = 0; c < NC; ++c) _mm512_storeu_ps(acc + r * lda + 16 * c, a[r][c]);
}

template <int NR>
LMLAB_TARGET_AVX512 void accumulate_rows_avx512(float* acc, int64_t lda, const float* alpha, const float* p,
                                                int64_t ldp, const float* t, int64_t ldt, int64_t nb, int64_t len) {
  int64_t i = 0;
  for (; i + 32 <= len; i += 32) accumulate_tile_avx512<NR, 2>(acc + i, lda, alpha, p, ldp, t + i, ldt, nb);
  if (i < len) accumulate_tile_avx512<NR, 1>(acc + i, lda, alpha, p, ldp, t + i, ldt, nb);
}

LMLAB_TARGET_AVX512 void accumulate_avx512(float* acc, int64_t lda, int64_t nr, const float* alpha, const float* p,
                                           int64_t ldp, const float* t, int64_t ldt, int64_t nb, int64_t len) {
  int64_t r = 0;
  for (; r + 4 <= nr; r += 4)
    accumulate_rows_avx512<4>(acc + r * lda, lda, alpha + r, p + r * ldp, ldp, t, ldt, nb, len);
  switch (nr - r) {
    case 3: accumulate_rows_avx512<3>(acc + r * lda, lda, alpha + r, p + r * ldp, ldp, t, ldt, nb, len); break;
    case 2: accumulate_rows_avx512<2>(acc + r * lda, lda, alpha + r, p + r * ldp, ldp, t, ldt, nb, len); break;
    case 1: accumulate_rows_avx512<1>(acc + r * lda, lda, alpha + r, p + r * ldp, ldp, t, ldt, nb, len); break;
    default: break;
  }
}

LMLAB_TARGET_AVX512 float max_avx512(const float* s, int64_t n) {
  __m512 m = _mm512_set1_ps(-INFINITY);
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 k = simd::tail_mask16(std::min<int64_t>(16, n - j));
    m = _mm512_mask_max_ps(m, k, m, _mm512_maskz_loadu_ps(k, s + j));
  }
  return _mm512_reduce_max_ps(m);
}

// ------------------------------------------------------------------------------------------- AVX2

// Lanes i of the result are all-ones where bit i of `byte` is set.
LMLAB_TARGET_AVX2 inline __m256i lane_mask8(uint8_t byte) {
  const __m256i bitsel = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
  return _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32(byte), bitsel), bitsel);
}

LMLAB_TARGET_AVX2 inline float f16c_avx2(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

// Codes of 8 coordinates (c-th group of 8) -> table indices in the low bits of each lane; bit 3 of the index
// (16-entry tables) is returned in the sign bit of *hi_sel.
template <int BITS>
LMLAB_TARGET_AVX2 inline __m256i code_lanes_avx2(const uint8_t* codes, int64_t plane_bytes, int64_t c, __m256* hi_sel) {
  if constexpr (BITS == 4) {
    // Half of a uint64 of nibbles (pack.h): lanes l of coordinates 8 (c % 2) + l.
    int64_t w;
    std::memcpy(&w, codes + 8 * (c / 2), 8);
    const __m256i shifts =
        (c % 2) ? _mm256_setr_epi32(16, 16, 20, 20, 24, 24, 28, 28) : _mm256_setr_epi32(0, 0, 4, 4, 8, 8, 12, 12);
    const __m256i idx = _mm256_srlv_epi32(_mm256_set1_epi64x(w), shifts);
    *hi_sel = _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28));
    return idx;
  } else {
    __m256i idx = _mm256_setzero_si256();
    for (int p = 0; p < BITS; ++p)
      idx = _mm256_or_si256(idx, _mm256_and_si256(lane_mask8(codes[p * plane_bytes + c]), _mm256_set1_epi32(1 << p)));
    return idx;
  }
}

template <int BITS>
LMLAB_TARGET_AVX2 void decode_table_avx2(const TqCodec& codec, const uint8_t* rec, int64_t rec_stride, int64_t nb,
                                         float* tile, int64_t ldt) {
  const TqFormat& f = codec.format();
  const int64_t g = f.group_dim, d = f.head_dim(), pb = g / 8, gb = f.group_bytes(), so = f.scalar_offset();
  const bool affine = f.scheme == TqScheme::affine;
  alignas(32) float cent[32] = {};
  for (int k = 0; k < (1 << BITS); ++k) cent[k] = affine ? static_cast<float>(k) : codec.codebook()->centroids[k];
  const __m256 c_lo = _mm256_load_ps(cent), c_hi = _mm256_load_ps(cent + 8);
  const __m256 c_2 = _mm256_load_ps(cent + 16), c_3 = _mm256_load_ps(cent + 24);  // 5-bit codes only
  for (int64_t j = 0; j < nb; ++j) {
    for (int64_t gi = 0; gi < f.n_groups; ++gi) {
      const uint8_t* in = rec + j * rec_stride + gi * gb;
      const float a = f16c_avx2(in + so), b = f.n_scalars() > 1 ? f16c_avx2(in + so + 2) : 0.0f;
      const __m256 av = _mm256_set1_ps(a), bv = _mm256_set1_ps(b);
      const __m256 t_lo = affine ? _mm256_fmadd_ps(av, c_lo, bv) : _mm256_mul_ps(av, c_lo);
      const __m256 t_hi = affine ? _mm256_fmadd_ps(av, c_hi, bv) : _mm256_mul_ps(av, c_hi);
      const __m256 t_2 = _mm256_mul_ps(av, c_2), t_3 = _mm256_mul_ps(av, c_3);
      float* out = tile + j * ldt + gi * g;
      for (int64_t c = 0; c < pb; ++c) {
        __m256 hi_sel;
        const __m256i idx = code_lanes_avx2<BITS>(in, pb, c, &hi_sel);
        __m256 v = _mm256_permutevar8x32_ps(t_lo, idx);
        if constexpr (BITS == 4) v = _mm256_blendv_ps(v, _mm256_permutevar8x32_ps(t_hi, idx), hi_sel);
        if constexpr (BITS == 5) {
          // Bits 3 and 4 of the index pick one of four 8-entry tables (blendv reads each lane's sign bit).
          const __m256 b3 = _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28));
          const __m256 b4 = _mm256_castsi256_ps(_mm256_slli_epi32(idx, 27));
          const __m256 v01 = _mm256_blendv_ps(v, _mm256_permutevar8x32_ps(t_hi, idx), b3);
          const __m256 v23 =
              _mm256_blendv_ps(_mm256_permutevar8x32_ps(t_2, idx), _mm256_permutevar8x32_ps(t_3, idx), b3);
          v = _mm256_blendv_ps(v01, v23, b4);
        }
        _mm256_storeu_ps(out + 8 * c, v);
      }
      if (f.qjl) {
        const float kappa = a * b * static_cast<float>(kSqrtHalfPi / static_cast<double>(g));
        const __m256 pos = _mm256_set1_ps(kappa), neg = _mm256_set1_ps(-kappa);
        const uint8_t* signs = in + f.code_bytes();
        float* qout = tile + j * ldt + d + gi * g;
        for (int64_t c = 0; c < pb; ++c)
          _mm256_storeu_ps(qout + 8 * c, _mm256_blendv_ps(neg, pos, _mm256_castsi256_ps(lane_mask8(signs[c]))));
      }
    }
  }
}

LMLAB_TARGET_AVX2 void decode_u8_avx2(const TqCodec& codec, const uint8_t* rec, int64_t rec_stride, int64_t nb,
                                      float* tile, int64_t ldt) {
  const TqFormat& f = codec.format();
  const int64_t g = f.group_dim, gb = f.group_bytes(), so = f.scalar_offset();
  for (int64_t j = 0; j < nb; ++j)
    for (int64_t gi = 0; gi < f.n_groups; ++gi) {
      const uint8_t* in = rec + j * rec_stride + gi * gb;
      const __m256 scale = _mm256_set1_ps(f16c_avx2(in + so)), mn = _mm256_set1_ps(f16c_avx2(in + so + 2));
      float* out = tile + j * ldt + gi * g;
      for (int64_t c = 0; c < g; c += 8) {
        const __m256 v =
            _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(in + c))));
        _mm256_storeu_ps(out + c, _mm256_fmadd_ps(scale, v, mn));
      }
    }
}

LMLAB_TARGET_AVX2 void decode_f16_avx2(const TqCodec& codec, const uint8_t* rec, int64_t rec_stride, int64_t nb,
                                       float* tile, int64_t ldt) {
  const int64_t d = codec.format().head_dim();
  for (int64_t j = 0; j < nb; ++j)
    for (int64_t c = 0; c < d; c += 8)
      _mm256_storeu_ps(tile + j * ldt + c,
                       _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(rec + j * rec_stride + 2 * c))));
}

void decode_avx2(const TqCodec& codec, const uint8_t* rec, int64_t rec_stride, int64_t nb, float* tile, int64_t ldt) {
  switch (codec.format().bits) {
    case 2: return decode_table_avx2<2>(codec, rec, rec_stride, nb, tile, ldt);
    case 3: return decode_table_avx2<3>(codec, rec, rec_stride, nb, tile, ldt);
    case 4: return decode_table_avx2<4>(codec, rec, rec_stride, nb, tile, ldt);
    case 5: return decode_table_avx2<5>(codec, rec, rec_stride, nb, tile, ldt);
    case 8: return decode_u8_avx2(codec, rec, rec_stride, nb, tile, ldt);
    case 16: return decode_f16_avx2(codec, rec, rec_stride, nb, tile, ldt);
    default: return decode_scalar(codec, rec, rec_stride, nb, tile, ldt);
  }
}

template <int NR>
LMLAB_TARGET_AVX2 void scores_rows_avx2(const float* q, int64_t ldq, const float* t, int64_t ldt, int64_t nb,
                                        int64_t len, float* s, int64_t lds) {
  int64_t j = 0;
  for (; j + 4 <= nb; j += 4) {
    const float* t0 = t + j * ldt;
    __m256 acc[NR][4];
    for (int r = 0; r < NR; ++r)
      for (int k = 0; k < 4; ++k) acc[r][k] = _mm256_setzero_ps();
    for (int64_t i = 0; i < len; i += 8) {
      const __m256 k0 = _mm256_loadu_ps(t0 + i), k1 = _mm256_loadu_ps(t0 + ldt + i);
      const __m256 k2 = _mm256_loadu_ps(t0 + 2 * ldt + i), k3 = _mm256_loadu_ps(t0 + 3 * ldt + i);
      for (int r = 0; r < NR; ++r) {
        const __m256 qv = _mm256_loadu_ps(q + r * ldq + i);
        acc[r][0] = _mm256_fmadd_ps(qv, k0, acc[r][0]);
        acc[r][1] = _mm256_fmadd_ps(qv, k1, acc[r][1]);
        acc[r][2] = _mm256_fmadd_ps(qv, k2, acc[r][2]);
        acc[r][3] = _mm256_fmadd_ps(qv, k3, acc[r][3]);
      }
    }
    for (int r = 0; r < NR; ++r)
      _mm_storeu_ps(s + r * lds + j, simd::hsum4(acc[r][0], acc[r][1], acc[r][2], acc[r][3]));
  }
  for (; j < nb; ++j) {
    const float* tj = t + j * ldt;
    __m256 acc[NR];
    for (int r = 0; r < NR; ++r) acc[r] = _mm256_setzero_ps();
    for (int64_t i = 0; i < len; i += 8) {
      const __m256 kv = _mm256_loadu_ps(tj + i);
      for (int r = 0; r < NR; ++r) acc[r] = _mm256_fmadd_ps(_mm256_loadu_ps(q + r * ldq + i), kv, acc[r]);
    }
    for (int r = 0; r < NR; ++r) s[r * lds + j] = simd::hsum8(acc[r]);
  }
}

LMLAB_TARGET_AVX2 void scores_avx2(const float* q, int64_t ldq, int64_t nr, const float* t, int64_t ldt, int64_t nb,
                                   int64_t len, float* s, int64_t lds) {
  int64_t r = 0;
  for (; r + 2 <= nr; r += 2) scores_rows_avx2<2>(q + r * ldq, ldq, t, ldt, nb, len, s + r * lds, lds);
  if (r < nr) scores_rows_avx2<1>(q + r * ldq, ldq, t, ldt, nb, len, s + r * lds, lds);
}

template <int NR, int NC>
LMLAB_TARGET_AVX2 void accumulate_tile_avx2(float* acc, int64_t lda, const float* alpha, const float* p, int64_t ldp,
                                            const float* t, int64_t ldt, int64_t nb) {
  __m256 a[NR][NC];
  for (int r = 0; r < NR; ++r) {
    const __m256 al = _mm256_set1_ps(alpha[r]);
    for (int c = 0; c < NC; ++c) a[r][c] = _mm256_mul_ps(_mm256_loadu_ps(acc + r * lda + 8 * c), al);
  }
  for (int64_t j = 0; j < nb; ++j) {
    __m256 tv[NC];
    for (int c = 0; c < NC; ++c) tv[c] = _mm256_loadu_ps(t + j * ldt + 8 * c);
    for (int r = 0; r < NR; ++r) {
      const __m256 pj = _mm256_set1_ps(p[r * ldp + j]);
      for (int c = 0; c < NC; ++c) a[r][c] = _mm256_fmadd_ps(pj, tv[c], a[r][c]);
    }
  }
  for (int r = 0; r < NR; ++r)
    for (int c = 0; c < NC; ++c) _mm256_storeu_ps(acc + r * lda + 8 * c, a[r][c]);
}

template <int NR>
LMLAB_TARGET_AVX2 void accumulate_rows_avx2(float* acc, int64_t lda, const float* alpha, const float* p, int64_t ldp,
                                            const float* t, int64_t ldt, int64_t nb, int64_t len) {
  int64_t i = 0;
  for (; i + 16 <= len; i += 16) accumulate_tile_avx2<NR, 2>(acc + i, lda, alpha, p, ldp, t + i, ldt, nb);
  if (i < len) accumulate_tile_avx2<NR, 1>(acc + i, lda, alpha, p, ldp, t + i, ldt, nb);
}

LMLAB_TARGET_AVX2 void accumulate_avx2(float* acc, int64_t lda, int64_t nr, const float* alpha, const float* p,
                                       int64_t ldp, const float* t, int64_t ldt, int64_t nb, int64_t len) {
  int64_t r = 0;
  for (; r + 4 <= nr; r += 4) accumulate_rows_avx2<4>(acc + r * lda, lda, alpha + r, p + r * ldp, ldp, t, ldt, nb, len);
  for (; r < nr; ++r) accumulate_rows_avx2<1>(acc + r * lda, lda, alpha + r, p + r * ldp, ldp, t, ldt, nb, len);
}

LMLAB_TARGET_AVX2 float max_avx2(const float* s, int64_t n) {
  if (n < 8) return max_scalar(s, n);
  __m256 m = _mm256_loadu_ps(s);
  int64_t j = 8;
  for (; j + 8 <= n; j += 8) m = _mm256_max_ps(m, _mm256_loadu_ps(s + j));
  const float r = simd::hmax8(m);
  return j < n ? std::max(r, max_scalar(s + j, n - j)) : r;
}
#endif  // LMLAB_X86

constexpr TqKernels kScalar{&decode_scalar, &scores_scalar, &accumulate_scalar, &simd::exp_sum_scalar, &max_scalar, "scalar"};
#if LMLAB_X86
constexpr TqKernels kAvx512{&decode_avx512, &scores_avx512, &accumulate_avx512, &simd::exp_sum_avx512, &max_avx512, "avx512"};
constexpr TqKernels kAvx2{&decode_avx2, &scores_avx2, &accumulate_avx2, &simd::exp_sum_avx2, &max_avx2, "avx2"};
#endif

}  // namespace

const TqKernels& tq_kernels() {
#if LMLAB_X86
  switch (kernels::cpu::active_isa()) {
    case Isa::avx512: return kAvx512;
    case Isa::avx2: return kAvx2;
    case Isa::scalar: break;
  }
#endif
  return kScalar;
}

}  // namespace lmlab::turboquant
