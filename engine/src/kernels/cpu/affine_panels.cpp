// The load-time repack into 16-row panels (kernels/affine_panels.h), run once per matrix: scales and biases copied
// value by value, the words by 16 x 16 transposes on AVX-512 (else word by word; the same bytes either way).
#include "kernels/affine_panels.h"

#include <sys/mman.h>

#include <cstring>

#include "kernels/cpu/isa.h"
#include "kernels/cpu/matmul_affine_i8_pack.h"
#include "util/thread_pool.h"

namespace lmlab::kernels {

namespace {

#if LMLAB_X86
// Panel pi's words: 16 words of each of its nr rows, transposed 16 x 16 (vector i = word i of the 16 rows), go to
// the records: word k of a row is word k % (group_size / 8) of group k / (group_size / 8), a multiple of 4 words
// per group, so 16 words span whole groups or, at a row's end, part of the last 16 (masked).
LMLAB_TARGET_AVX512 void words_avx512(const AffineWeight& w, const AffinePanels& p, int64_t pi, int64_t nr,
                                      uint8_t* dst) {
  const int64_t wpr = w.words_per_row(), wpg = w.group_size / 8;
  for (int64_t k0 = 0; k0 < wpr; k0 += 16) {
    const int64_t nk = std::min<int64_t>(16, wpr - k0);
    __m512i v[16];
    for (int64_t l = 0; l < 16; ++l)
      v[l] = l < nr ? _mm512_maskz_loadu_epi32(cpu::simd::tail_mask16(nk), w.packed + (pi * kPanelRows + l) * wpr + k0)
                    : _mm512_setzero_si512();
    cpu::simd::transpose16(v);
    for (int64_t i = 0; i < nk; ++i) {
      const int64_t k = k0 + i;
      _mm512_store_si512(dst + (k / wpg) * p.record_bytes + p.words_offset() + (k % wpg) * 64, v[i]);
    }
  }
}
#endif

}  // namespace

AffinePanels repack_affine_panels(const AffineWeight& w) {
  AffinePanels p;
  p.rows = w.rows;
  p.cols = w.cols;
  p.group_size = w.group_size;
  p.scale_type = w.scale_type;
  p.groups = w.groups_per_row();
  p.panels = (w.rows + kPanelRows - 1) / kPanelRows;
  const int64_t sb = p.scale_bytes(), words_per_group = w.group_size / 8, wpr = w.words_per_row();
  p.record_bytes = p.words_offset() + words_per_group * kPanelRows * 4;
  p.data = allocate_weight_buffer(static_cast<uint64_t>(p.bytes()));
#ifdef MADV_POPULATE_READ  // the mapped words read in by one call instead of a fault a page (advice only)
  const auto packed = reinterpret_cast<uintptr_t>(w.packed), first_page = packed / 4096 * 4096;
  madvise(reinterpret_cast<void*>(first_page), packed + static_cast<uint64_t>(w.rows * w.cols * w.bits / 8) - first_page,
          MADV_POPULATE_READ);
#endif
  const auto* scales = static_cast<const uint8_t*>(w.scales);
  const auto* biases = static_cast<const uint8_t*>(w.biases);
#if LMLAB_X86
  const bool vector = cpu::active_isa() == cpu::Isa::avx512;
#endif
  // A scale or bias (2 or 4 bytes) with a constant size, so the copy is a load and a store, not a library call
  // per value (an MoE's experts are millions of them).
  auto copy_scale = [sb](uint8_t* d, const uint8_t* s) {
    if (sb == 2) std::memcpy(d, s, 2);
    else std::memcpy(d, s, 4);
  };
  ThreadPool::global().parallel_for(p.panels, [&](int64_t p0, int64_t p1) {
    for (int64_t pi = p0; pi < p1; ++pi) {
      uint8_t* dst = p.data.get() + pi * p.panel_bytes();
      const int64_t nr = std::min(kPanelRows, w.rows - pi * kPanelRows);
      if (nr < kPanelRows) std::memset(dst, 0, static_cast<size_t>(p.panel_bytes()));  // missing rows are zero
      for (int64_t l = 0; l < nr; ++l) {
        const int64_t r = pi * kPanelRows + l;
        for (int64_t g = 0; g < p.groups; ++g) {
          uint8_t* rec = dst + g * p.record_bytes;
          copy_scale(rec + l * sb, scales + (r * p.groups + g) * sb);
          copy_scale(rec + (kPanelRows + l) * sb, biases + (r * p.groups + g) * sb);
        }
      }
#if LMLAB_X86
      if (vector) {
        words_avx512(w, p, pi, nr, dst);
        continue;
      }
#endif
      for (int64_t l = 0; l < nr; ++l) {
        const uint32_t* row = w.packed + (pi * kPanelRows + l) * wpr;
        for (int64_t g = 0; g < p.groups; ++g) {
          auto* words = reinterpret_cast<uint32_t*>(dst + g * p.record_bytes + p.words_offset());
          for (int64_t i = 0; i < words_per_group; ++i) words[i * kPanelRows + l] = row[g * words_per_group + i];
        }
      }
    }
  });
  return p;
}

bool affine_panels_enabled() {
  static const bool on = [] {
    const char* env = std::getenv("LMLAB_AFFINE_PANELS");
    return !(env != nullptr && std::strcmp(env, "0") == 0);
  }();
  return on;
}

}  // namespace lmlab::kernels
