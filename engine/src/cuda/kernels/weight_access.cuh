// Device-side readers of weights in their stored format (bf16 / f16 / f32 elements, MLX affine packed
// values with their group's scale and bias), shared by the matmul and embedding kernels.
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

#include "cuda/kernels/kernels_cuda.h"

namespace lmlab::kernels::cuda {

__device__ __forceinline__ float bf16_to_float(uint16_t v) { return __uint_as_float(static_cast<uint32_t>(v) << 16); }
__device__ __forceinline__ float f16_to_float(uint16_t v) { return __half2float(__ushort_as_half(v)); }

__device__ __forceinline__ float load_scale(const void* p, int64_t i, ScaleType t) {
  switch (t) {
    case ScaleType::bf16: return bf16_to_float(static_cast<const uint16_t*>(p)[i]);
    case ScaleType::f16: return f16_to_float(static_cast<const uint16_t*>(p)[i]);
    default: return static_cast<const float*>(p)[i];
  }
}

__device__ __forceinline__ float load_dense(const void* w, int64_t i, WeightType t) {
  switch (t) {
    case WeightType::bf16: return bf16_to_float(static_cast<const uint16_t*>(w)[i]);
    case WeightType::f16: return f16_to_float(static_cast<const uint16_t*>(w)[i]);
    default: return static_cast<const float*>(w)[i];
  }
}

// Value c of row r of an affine weight: its packed integer q (bit stream, first value lowest), s * q + b.
__device__ __forceinline__ float load_affine(const AffineWeight& w, int64_t r, int64_t c) {
  const uint32_t* row = w.packed + r * (w.cols * w.bits / 32);
  const int64_t bit = c * w.bits;
  const int64_t word = bit >> 5;
  const int off = static_cast<int>(bit & 31);
  uint32_t q = row[word] >> off;
  if (off + w.bits > 32) q |= row[word + 1] << (32 - off);
  q &= (1u << w.bits) - 1u;
  const int64_t g = r * (w.cols / w.group_size) + c / w.group_size;
  return load_scale(w.scales, g, w.scale_type) * static_cast<float>(q) + load_scale(w.biases, g, w.scale_type);
}

// Element (r, c) of a (dense or affine) device weight.
__device__ __forceinline__ float load_weight(const DeviceWeight& w, int64_t r, int64_t c) {
  return w.affine ? load_affine(w.quant, r, c) : load_dense(w.dense, r * w.cols + c, w.type);
}

// The same weight with expert e's matrix selected (stacked experts).
__host__ __device__ inline DeviceWeight select_expert(DeviceWeight w, int64_t e) {
  if (w.affine) {
    w.quant.packed = reinterpret_cast<const uint32_t*>(reinterpret_cast<const uint8_t*>(w.quant.packed) + e * w.stride_w);
    w.quant.scales = static_cast<const uint8_t*>(w.quant.scales) + e * w.stride_s;
    w.quant.biases = static_cast<const uint8_t*>(w.quant.biases) + e * w.stride_s;
  } else {
    w.dense = static_cast<const uint8_t*>(w.dense) + e * w.stride_w;
  }
  if (w.bias) w.bias += e * w.rows;
  return w;
}

}  // namespace lmlab::kernels::cuda
