// TurboQuant / affine / f16 record decode into score rows, per ISA (see tq_decode.h):
//   b-bit codes -> values by a table lookup: the table is the record's codebook scaled by its norm (lloyd_max) or
//   min + scale * k (affine), so no per-coordinate multiply remains, and vpermps picks table[idx] for 16 lanes
//   (AVX2: two vpermps + a blend for 8 lanes); 5-bit codes index 32 entries: vpermt2ps over two tables (AVX2: four
//   vpermps + three blends). Indices: 4-bit nibbles are one broadcast uint64 shifted per lane (3 instructions per
//   16 coordinates); 2- and 3-bit planar codes are OR-ed together from one uint16 lane mask per plane. QJL signs
//   become +-kappa by one masked blend per 16 coordinates. The f16 baseline's records are plain fp16 rows: one
//   vcvtph2ps per 16 (AVX2: 8) coordinates.
#include "kv/turboquant/tq_decode.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/cpu/isa.h"
#include "kernels/cpu/simd.h"

namespace lmlab::turboquant {

namespace {

using kernels::cpu::Isa;

void decode_scalar(const TqCodec& codec, const uint8_t* rec, int64_t rec_stride, int64_t nb, float* tile, int64_t ldt) {
  for (int64_t j = 0; j < nb; ++j) codec.decode_row(rec + j * rec_stride, tile + j * ldt);
}

#if LMLAB_X86
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

#endif  // LMLAB_X86

}  // namespace

TqDecodeFn tq_decode() {
#if LMLAB_X86
  switch (kernels::cpu::active_isa()) {
    case Isa::avx512: return &decode_avx512;
    case Isa::avx2: return &decode_avx2;
    case Isa::scalar: break;
  }
#endif
  return &decode_scalar;
}

}  // namespace lmlab::turboquant
