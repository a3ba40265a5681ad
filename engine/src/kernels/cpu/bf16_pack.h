// Packing shared by the vdpbf16ps prefill GEMMs (matmul_bf16.cpp: bf16 weights; matmul_affine_bf16.cpp: MLX
// affine weights): the per-call (hi, lo) split and packing of X and the grow-only aligned buffer they pack into
// (simd::transpose16 puts 16 rows of W in the lanes).
//
// vdpbf16ps: acc.f32[i] += a.bf16[2i] * b.bf16[2i] + a.bf16[2i+1] * b.bf16[2i+1]. A lane consumes a *pair* of
// consecutive columns, so both operands are packed in pairs (one u32, lower column in the low half).
// Packed X, per block of kPackTokens tokens and kPackPairs pairs: [kPackTokens][kPackPairs][2] u32, token j's pair p
// as (hi, lo) with x = hi + lo + O(2^-16 x) (matmul_bf16.h says why two parts); pairs past the last column are 0.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>

#include "kernels/cpu/isa.h"
#include "kernels/cpu/simd.h"

namespace lmlab::kernels::cpu::bf16_pack {

constexpr int kPackTokens = 12;      // tokens per packed X block (the bf16 GEMM's tile width)
constexpr int64_t kPackPairs = 128;  // column pairs per reduction block (a multiple of 16)

}  // namespace lmlab::kernels::cpu::bf16_pack

#if LMLAB_X86
namespace lmlab::kernels::cpu::bf16_pack {

// A 64-byte aligned u32 buffer that only grows (kept per thread: reallocating per call would page-fault).
class AlignedU32 {
 public:
  uint32_t* reserve(size_t count) {
    if (count > cap_) {
      const size_t bytes = (count * sizeof(uint32_t) + 63) / 64 * 64;
      p_.reset(static_cast<uint32_t*>(std::aligned_alloc(64, bytes)));
      if (!p_) {
        std::fprintf(stderr, "lmlab: out of memory for a %zu-byte GEMM buffer\n", bytes);
        std::abort();
      }
      cap_ = bytes / sizeof(uint32_t);
    }
    return p_.get();
  }

 private:
  struct Free {
    void operator()(uint32_t* p) const { std::free(p); }
  };
  std::unique_ptr<uint32_t, Free> p_;
  size_t cap_ = 0;
};

inline __mmask16 rows_mask(int64_t k) {
  return k >= 16 ? __mmask16(0xffff) : k <= 0 ? __mmask16(0) : __mmask16((1u << k) - 1u);
}

// u32s of packed X for one token block of `cols` columns.
inline int64_t x_block_u32(int64_t cols) {
  const int64_t pairs = (cols + 1) / 2;
  return (pairs + kPackPairs - 1) / kPackPairs * kPackTokens * kPackPairs * 2;
}

// X rows [nt, cols] (nt <= kPackTokens) -> the packed blocks of one token block:
// [ceil(P / kPackPairs)][kPackTokens][kPackPairs][2] (tokens >= nt unset: no tile reads them).
LMLAB_TARGET_AVX512_BF16 inline void pack_x(const float* x, int64_t cols, int64_t nt, uint32_t* out) {
  for (int64_t j = 0; j < nt; ++j) {
    const float* xr = x + j * cols;
    for (int64_t c = 0; c < cols; c += 16) {
      const __mmask16 m = rows_mask(cols - c);
      const __m512 v = _mm512_maskz_loadu_ps(m, xr + c);
      const __m256i h = reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(v));
      const __m512 hf = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
      // x - hi is exact; an infinite hi (x infinite or rounded up past FLT_MAX) gets lo = 0, not inf - inf.
      const __mmask16 inf = _mm512_fpclass_ps_mask(hf, 0x18);
      const __m512 d = _mm512_maskz_sub_ps(static_cast<__mmask16>(~inf), v, hf);
      const __m256i l = reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(d));
      // 8 pairs as (hi, lo) u64s; pairs past P (zeros) stay inside the block's kPackPairs (a multiple of 8).
      const __m512i hl = _mm512_or_si512(_mm512_cvtepu32_epi64(h), _mm512_slli_epi64(_mm512_cvtepu32_epi64(l), 32));
      const int64_t p = c / 2;
      _mm512_storeu_si512(out + ((p / kPackPairs * kPackTokens + j) * kPackPairs + p % kPackPairs) * 2, hl);
    }
  }
}


}  // namespace lmlab::kernels::cpu::bf16_pack
#endif  // LMLAB_X86
