#include "convert/quantize.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "util/half.h"

namespace lmlab {

namespace {

inline uint16_t to_half(float v, kernels::ScaleType t) {
  return t == kernels::ScaleType::f16 ? f32_to_f16(v) : f32_to_bf16(v);
}
inline float from_half(uint16_t h, kernels::ScaleType t) {
  return t == kernels::ScaleType::f16 ? f16_to_f32(h) : bf16_to_f32(h);
}

}  // namespace

void quantize_affine(const float* w, int64_t rows, int64_t cols, int bits, int group_size,
                     kernels::ScaleType scale_type, uint32_t* packed, uint16_t* scales, uint16_t* biases) {
  const int64_t groups = cols / group_size, words = cols * bits / 32;
  const float n_bins = static_cast<float>((1 << bits) - 1);
  for (int64_t r = 0; r < rows; ++r) {
    const float* wr = w + r * cols;
    uint32_t* pr = packed + r * words;
    std::memset(pr, 0, static_cast<size_t>(words) * 4);
    for (int64_t g = 0; g < groups; ++g) {
      const float* wg = wr + g * group_size;
      float lo = wg[0], hi = wg[0];
      for (int i = 1; i < group_size; ++i) {
        lo = std::min(lo, wg[i]);
        hi = std::max(hi, wg[i]);
      }
      const uint16_t s_h = to_half(std::max((hi - lo) / n_bins, 1e-7f), scale_type);
      const uint16_t b_h = to_half(lo, scale_type);
      scales[r * groups + g] = s_h;
      biases[r * groups + g] = b_h;
      const float s = from_half(s_h, scale_type), b = from_half(b_h, scale_type);
      const float inv = s > 0.0f ? 1.0f / s : 0.0f;
      for (int i = 0; i < group_size; ++i) {
        const float q = std::clamp(std::nearbyint((wg[i] - b) * inv), 0.0f, n_bins);
        const uint64_t v = static_cast<uint64_t>(q);
        const int64_t bit = (g * group_size + i) * bits;
        pr[bit / 32] |= static_cast<uint32_t>(v << (bit % 32));
        if (bit % 32 + bits > 32) pr[bit / 32 + 1] |= static_cast<uint32_t>(v >> (32 - bit % 32));
      }
    }
  }
}

}  // namespace lmlab
