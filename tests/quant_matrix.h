// A random MLX affine-quantized matrix for kernel tests: values packed as MLX does, scales and biases shaped
// like real ones, stored as f32, f16 or bf16.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "kernels/matmul_affine.h"
#include "util/half.h"

namespace lmlab::test {

using kernels::AffineWeight;
using kernels::ScaleType;

// Packs q[rows, cols] (values < 2^bits) into MLX's little-endian bit stream, one row after another.
inline std::vector<uint32_t> pack(const std::vector<uint32_t>& q, int64_t rows, int64_t cols, int bits) {
  const int64_t words = cols * bits / 32;
  std::vector<uint32_t> out(static_cast<size_t>(rows * words), 0u);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      const uint64_t v = q[r * cols + c];
      const int64_t bit = c * bits;
      uint32_t* row = out.data() + r * words;
      row[bit / 32] |= static_cast<uint32_t>(v << (bit % 32));
      if (bit % 32 + bits > 32) row[bit / 32 + 1] |= static_cast<uint32_t>(v >> (32 - bit % 32));
    }
  return out;
}

// A random quantized matrix with scales and biases shaped like real ones (bias about -scale * 2^(bits-1)).
struct QuantMatrix {
  int bits, group_size;
  int64_t rows, cols;
  ScaleType st;
  std::vector<uint32_t> q, packed;
  std::vector<float> s_f32, b_f32;       // as stored when st == f32
  std::vector<uint16_t> s_half, b_half;  // as stored otherwise

  QuantMatrix(int bits_, int gs, int64_t rows_, int64_t cols_, ScaleType st_, uint32_t seed)
      : bits(bits_), group_size(gs), rows(rows_), cols(cols_), st(st_) {
    std::mt19937 rng(seed);
    std::uniform_int_distribution<uint32_t> qd(0, (1u << bits) - 1);
    std::uniform_real_distribution<float> sd(0.001f, 0.01f), jitter(-0.5f, 0.5f);
    q.resize(static_cast<size_t>(rows * cols));
    for (auto& v : q) v = qd(rng);
    packed = pack(q, rows, cols, bits);
    const int64_t n = rows * (cols / gs);
    for (int64_t i = 0; i < n; ++i) {
      const float s = sd(rng), b = -s * static_cast<float>(1 << (bits - 1)) * (1.0f + jitter(rng));
      if (st == ScaleType::f32) {
        s_f32.push_back(s);
        b_f32.push_back(b);
      } else if (st == ScaleType::f16) {
        s_half.push_back(f32_to_f16(s));
        b_half.push_back(f32_to_f16(b));
      } else {
        s_half.push_back(f32_to_bf16(s));
        b_half.push_back(f32_to_bf16(b));
      }
    }
  }

  AffineWeight weight() const {
    const void* s = st == ScaleType::f32 ? static_cast<const void*>(s_f32.data()) : s_half.data();
    const void* b = st == ScaleType::f32 ? static_cast<const void*>(b_f32.data()) : b_half.data();
    return AffineWeight{packed.data(), s, b, st, bits, group_size, rows, cols};
  }
  float scale(int64_t i) const {
    return st == ScaleType::f32 ? s_f32[i] : st == ScaleType::f16 ? f16_to_f32(s_half[i]) : bf16_to_f32(s_half[i]);
  }
  float bias(int64_t i) const {
    return st == ScaleType::f32 ? b_f32[i] : st == ScaleType::f16 ? f16_to_f32(b_half[i]) : bf16_to_f32(b_half[i]);
  }
};

inline const char* scale_name(ScaleType t) { return t == ScaleType::f32 ? "f32" : t == ScaleType::f16 ? "f16" : "bf16"; }

}  // namespace lmlab::test
