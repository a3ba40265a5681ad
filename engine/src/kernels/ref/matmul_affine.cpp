// Reference affine-quantized matmul: unpack each value from the row's bit stream, dequantize it in f32 as
// MLX does (s * q + b), accumulate in double. Slow and obvious; the ground truth for the cpu:: kernel.
#include <cstring>
#include <vector>

#include "kernels/matmul_affine.h"
#include "util/half.h"

namespace lmlab::kernels {

uint64_t AffineWeight::bytes() const {
  const uint64_t scale_bytes = scale_type == ScaleType::f32 ? 4 : 2;
  return static_cast<uint64_t>(rows) *
         (static_cast<uint64_t>(words_per_row()) * 4 + 2 * static_cast<uint64_t>(groups_per_row()) * scale_bytes);
}

bool affine_params_supported(int bits, int group_size, int64_t cols) {
  if (bits < 2 || bits > 8 || bits == 7) return false;
  if (group_size <= 0 || group_size % 32 != 0) return false;
  return cols > 0 && cols % group_size == 0;
}

float affine_scale_value(const void* p, ScaleType t, int64_t i) {
  switch (t) {
    case ScaleType::f32: return static_cast<const float*>(p)[i];
    case ScaleType::f16: return f16_to_f32(static_cast<const uint16_t*>(p)[i]);
    case ScaleType::bf16: return bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
  }
  return 0.0f;
}

namespace ref {

namespace {

// Value c of row r: bits [c * bits, (c + 1) * bits) of the row's little-endian bit stream.
uint32_t quant_at(const AffineWeight& w, int64_t r, int64_t c) {
  const auto* row = reinterpret_cast<const uint8_t*>(w.packed + r * w.words_per_row());
  const int64_t bit = c * w.bits;
  uint32_t window = 0;  // 16 bits starting at the value's byte hold any value of <= 8 bits
  const int64_t byte = bit / 8;
  const int64_t row_bytes = w.words_per_row() * 4;
  window = row[byte];
  if (byte + 1 < row_bytes) window |= static_cast<uint32_t>(row[byte + 1]) << 8;
  return (window >> (bit % 8)) & ((1u << w.bits) - 1u);
}

}  // namespace

void dequantize_affine_row(const AffineWeight& w, int64_t r, float* out) {
  const int64_t groups = w.groups_per_row();
  for (int64_t c = 0; c < w.cols; ++c) {
    const int64_t g = r * groups + c / w.group_size;
    out[c] = affine_scale_value(w.scales, w.scale_type, g) * static_cast<float>(quant_at(w, r, c)) +
             affine_scale_value(w.biases, w.scale_type, g);
  }
}

void matmul_affine(const MatmulAffineArgs& a) {
  std::vector<float> row(static_cast<size_t>(a.w.cols));
  for (int64_t r = 0; r < a.w.rows; ++r) {
    dequantize_affine_row(a.w, r, row.data());
    for (int64_t t = 0; t < a.n; ++t) {
      double acc = 0.0;
      for (int64_t c = 0; c < a.w.cols; ++c) acc += static_cast<double>(row[c]) * a.x[t * a.w.cols + c];
      a.y[t * a.w.rows + r] = static_cast<float>(acc);
    }
  }
}

}  // namespace ref
}  // namespace lmlab::kernels
