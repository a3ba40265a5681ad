// MLX affine quantization of f32 rows, used by `convert` and `synth`. Output format as mlx.core.quantize:
// per group of group_size values along a row, w ~ scale * q + bias with q in [0, 2^bits), q packed along the
// row as a little-endian bit stream (first value in the lowest bits), scale and bias stored as bf16 / f16.
// How scale and bias are chosen (the format does not care; any loader dequantizes the same way):
//   minmax  scale = (max - min) / (2^bits - 1), bias = min (MLX's classic fit): fast.
//   mse     minimises the group's squared dequantization error: starts from minmax, the minmax fit shifted
//           so that 0 is exactly representable, and ranges clipped by up to 20% at either end (an 11 x 11
//           grid), then alternates q = round((w - bias) / scale) with the least-squares (scale, bias) for those
//           q (from the best two candidates). Data-free. The candidates are evaluated in vector lanes
//           (quantize_group.h); quantize_ref.cpp keeps the original scalar search, which this one never does
//           worse than (tests/quantize_test.cpp). coder-dense at 4 bits, group 64: +3.0% perplexity (minmax:
//           +4.8%); with the tied embedding at 8 bits: +1.9% (minmax: +3.8%).
// In both, scale and bias are rounded to the output dtype before q is computed, so dequantization reproduces
// w within half a step (plus the bias's rounding) for the values inside the fitted range.
#pragma once

#include <cstdint>

#include "kernels/matmul_affine.h"
#include "util/half.h"

namespace lmlab {

// A scale or bias in its stored dtype (bf16 or f16), and back.
inline uint16_t to_scale_dtype(float v, kernels::ScaleType t) {
  return t == kernels::ScaleType::f16 ? f32_to_f16(v) : f32_to_bf16(v);
}
inline float from_scale_dtype(uint16_t h, kernels::ScaleType t) {
  return t == kernels::ScaleType::f16 ? f16_to_f32(h) : bf16_to_f32(h);
}

enum class QuantMethod { minmax, mse };

// w [rows, cols] -> packed [rows, cols * bits / 32], scales and biases [rows, cols / group_size] stored as
// scale_type (bf16 or f16). cols must be a multiple of group_size, group_size a multiple of 32.
void quantize_affine(const float* w, int64_t rows, int64_t cols, int bits, int group_size,
                     kernels::ScaleType scale_type, uint32_t* packed, uint16_t* scales, uint16_t* biases,
                     QuantMethod method = QuantMethod::minmax);

}  // namespace lmlab
