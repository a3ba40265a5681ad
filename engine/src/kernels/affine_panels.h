// 4-bit MLX affine weights repacked once at load into 16-row panels for the split-int8 decode kernel
// (matmul_affine_i8.h), so that the kernel reads one sequential stream per 16 rows and needs no per-call
// transposes: the stored layout puts a row's words one after another, and the kernel wants the 16 rows' word w
// in one 64-byte vector (lane l = row l).
//
// Layout: panel p holds rows [16p, 16p + 16) (rows past the matrix are zero), one "group record" per group g
// of group_size inputs, records one after another:
//   scales [16]                 as stored (bf16 / f16 / f32), lane l = row 16p + l
//   biases [16]                 the same
//   words  [group_size / 8][16] u32, word i of the group for each of the 16 rows (8 values of 4 bits each)
// A record is 64-byte aligned (32 * 2 or 32 * 4 bytes of scales and biases, 8 * group_size bytes of words), so a
// 64-byte load at words + 16 * i is the 16 rows' word i. The bytes are the stored ones (no conversion), so the
// kernels read the same numbers: the repacked kernel's results are bit-identical to the row-layout kernel's.
// Memory: exactly the stored packed words, scales and biases, plus the zero rows of the last panel.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <memory>

#include "kernels/matmul_affine.h"
#include "util/weight_buffer.h"

namespace lmlab::kernels {

constexpr int64_t kPanelRows = 16;

struct AffinePanels {
  int64_t rows = 0, cols = 0, group_size = 0;
  ScaleType scale_type = ScaleType::bf16;
  int64_t panels = 0;        // ceil(rows / 16)
  int64_t record_bytes = 0;  // one group record
  int64_t groups = 0;        // per row
  WeightBuffer data;         // [panels][groups] records (util/weight_buffer.h: huge pages)

  int64_t scale_bytes() const { return scale_type == ScaleType::f32 ? 4 : 2; }
  int64_t words_offset() const { return 2 * kPanelRows * scale_bytes(); }  // within a record
  int64_t panel_bytes() const { return groups * record_bytes; }
  const uint8_t* record(int64_t panel, int64_t g) const {
    return data.get() + panel * panel_bytes() + g * record_bytes;
  }
  uint64_t bytes() const { return static_cast<uint64_t>(panels * panel_bytes()); }
};

// Requires affine_i8_supported(w). Multi-threaded over panels (ThreadPool::global()).
AffinePanels repack_affine_panels(const AffineWeight& w);

// LMLAB_AFFINE_PANELS=0 keeps 4-bit weights in the stored layout on the row-layout kernel (before/after runs in
// one build).
bool affine_panels_enabled();

}  // namespace lmlab::kernels
