// The load-time repack into 16-row panels (kernels/affine_panels.h): a plain copy, word by word, run once per
// matrix; not on any per-token path.
#include "kernels/affine_panels.h"

#include <cstring>
#include <new>

#include "util/thread_pool.h"

namespace lmlab::kernels {

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
  const uint64_t total = p.bytes();
  p.data.reset(static_cast<uint8_t*>(std::aligned_alloc(64, (total + 63) / 64 * 64)));
  if (!p.data) throw std::bad_alloc();
  const auto* scales = static_cast<const uint8_t*>(w.scales);
  const auto* biases = static_cast<const uint8_t*>(w.biases);
  ThreadPool::global().parallel_for(p.panels, [&](int64_t p0, int64_t p1) {
    for (int64_t pi = p0; pi < p1; ++pi) {
      uint8_t* dst = p.data.get() + pi * p.panel_bytes();
      const int64_t nr = std::min(kPanelRows, w.rows - pi * kPanelRows);
      if (nr < kPanelRows) std::memset(dst, 0, static_cast<size_t>(p.panel_bytes()));  // missing rows are zero
      for (int64_t l = 0; l < nr; ++l) {
        const int64_t r = pi * kPanelRows + l;
        const uint32_t* row = w.packed + r * wpr;
        for (int64_t g = 0; g < p.groups; ++g) {
          uint8_t* rec = dst + g * p.record_bytes;
          std::memcpy(rec + l * sb, scales + (r * p.groups + g) * sb, static_cast<size_t>(sb));
          std::memcpy(rec + (kPanelRows + l) * sb, biases + (r * p.groups + g) * sb, static_cast<size_t>(sb));
          auto* words = reinterpret_cast<uint32_t*>(rec + p.words_offset());
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
