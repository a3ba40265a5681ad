// Linear over tensors that live in memory outside a WeightStore, e.g. an MoE expert read from disk into an
// expert-cache buffer. Same formats and the same kernels as load_linear, so a streamed expert computes
// exactly what the memory-mapped one does. The Linear points into the caller's bytes (no copy, except a
// Linear bias which is converted to f32): they must outlive it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "lmlab/safetensors.h"
#include "weights/linear.h"

namespace lmlab {

// One tensor in memory: its bytes and what its safetensors header says.
struct TensorView {
  const uint8_t* data = nullptr;  // null: absent
  DType dtype = DType::f32;
  std::vector<int64_t> shape;     // this tensor's shape (an expert's slice: without the expert axis)
  std::string where;              // names it in errors: "<file>: tensor '<name>' (expert 3)"
  explicit operator bool() const { return data != nullptr; }
};

// The tensors of one Linear. Dense: weight [out, in] f32/f16/bf16. MLX affine: weight u32 [out, in*bits/32],
// scales and biases [out, in/group_size]. bias: optional [out] (y += bias).
struct LinearView {
  TensorView weight, scales, biases, bias;
};

// Checks shapes and dtypes against [out, in] and `quant` and throws model_format / unsupported naming the
// tensor's `where`. Quantized weights (u32, or with scales: mlx-lm's rule) become make_affine_linear, the rest
// make_dense_linear. load_linear goes through here too: one validation for mapped and streamed weights.
// resident: see make_affine_linear (load_linear's mapped tensors; streamed experts are not).
std::unique_ptr<Linear> make_linear_from_bytes(const LinearView& v, int64_t out, int64_t in, const QuantSpec& quant,
                                               bool resident = false);

// A vector tensor [n] (a norm weight, a bias) as f32 plus `offset` (gemma's (1 + w)); f32/f16/bf16.
std::vector<float> view_to_f32(const TensorView& t, int64_t n, float offset = 0.0f);

}  // namespace lmlab
