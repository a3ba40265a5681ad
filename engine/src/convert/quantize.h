// MLX affine quantization of f32 rows (what `mlx.core.quantize` computes), used by `convert` and `synth`.
// Per group of group_size values along a row: scale = (max - min) / (2^bits - 1), bias = min, both rounded to
// the output dtype (bf16 or f16) first, then q = clamp(round((w - bias) / scale), 0, 2^bits - 1) with the
// rounded values, so dequantization (scale * q + bias) reproduces w within scale / 2 plus the rounding of
// bias. q values are packed along the row as a little-endian bit stream (first value in the lowest bits).
#pragma once

#include <cstdint>

#include "kernels/matmul_affine.h"

namespace lmlab {

// w [rows, cols] -> packed [rows, cols * bits / 32], scales and biases [rows, cols / group_size] stored as
// scale_type (bf16 or f16). cols must be a multiple of group_size, group_size a multiple of 32.
void quantize_affine(const float* w, int64_t rows, int64_t cols, int bits, int group_size,
                     kernels::ScaleType scale_type, uint32_t* packed, uint16_t* scales, uint16_t* biases);

}  // namespace lmlab
