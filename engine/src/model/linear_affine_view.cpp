// make_linear_affine_from_bytes: the MLX affine Linear over caller-owned bytes (streamed experts). It is
// linear_affine.cpp's AffineLinear over a LinearView instead of a WeightStore: the same AffineWeight, the
// same fused kernel, so a streamed expert computes bit-for-bit what the mapped one does (tested in
// expert_stream_test). Once AffineLinear is visible outside linear_affine.cpp, this class can go.
#include <fmt/format.h>

#include "kernels/matmul_affine.h"
#include "lmlab/error.h"
#include "model/linear_view.h"
#include "util/half.h"

namespace lmlab {

namespace {

class AffineViewLinear final : public Linear {
 public:
  AffineViewLinear(const kernels::AffineWeight& w, std::vector<float> bias)
      : Linear(w.rows, w.cols), w_(w), bias_(std::move(bias)) {}

  void forward(const float* x, float* y, int64_t n) const override {
    kernels::matmul_affine({w_, x, y, n});
    if (!bias_.empty())
      for (int64_t t = 0; t < n; ++t)
        for (int64_t r = 0; r < out_; ++r) y[t * out_ + r] += bias_[r];
  }
  void dequantize_row(int64_t r, float* out) const override { kernels::ref::dequantize_affine_row(w_, r, out); }
  uint64_t weight_bytes() const override { return w_.bytes(); }
  std::string format() const override { return fmt::format("q{}g{}", w_.bits, w_.group_size); }

 private:
  kernels::AffineWeight w_;
  std::vector<float> bias_;
};

float scalar_at(const TensorView& t, int64_t i) {
  switch (t.dtype) {
    case DType::f32: return reinterpret_cast<const float*>(t.data)[i];
    case DType::f16: return f16_to_f32(reinterpret_cast<const uint16_t*>(t.data)[i]);
    case DType::bf16: return bf16_to_f32(reinterpret_cast<const uint16_t*>(t.data)[i]);
    default:
      throw Error(ErrorKind::unsupported, t.where, fmt::format("dtype {} is not supported for a bias", dtype_name(t.dtype)));
  }
}

}  // namespace

std::unique_ptr<Linear> make_linear_affine_from_bytes(const LinearView& v, int64_t out, int64_t in,
                                                      const QuantSpec& quant) {
  if (!kernels::affine_params_supported(quant.bits, quant.group_size, in))
    throw Error(ErrorKind::unsupported, v.weight.where,
                fmt::format("{}-bit quantization with group size {} over {} input features is not supported",
                            quant.bits, quant.group_size, in));
  kernels::AffineWeight w;
  switch (v.scales.dtype) {
    case DType::bf16: w.scale_type = kernels::ScaleType::bf16; break;
    case DType::f16: w.scale_type = kernels::ScaleType::f16; break;
    case DType::f32: w.scale_type = kernels::ScaleType::f32; break;
    default:
      throw Error(ErrorKind::unsupported, v.scales.where,
                  fmt::format("dtype {} is not supported for quantization scales or biases (bf16, f16, f32 are)",
                              dtype_name(v.scales.dtype)));
  }
  w.packed = reinterpret_cast<const uint32_t*>(v.weight.data);
  w.scales = v.scales.data;
  w.biases = v.biases.data;
  w.bits = quant.bits;
  w.group_size = quant.group_size;
  w.rows = out;
  w.cols = in;
  std::vector<float> bias;
  if (v.bias) {
    bias.resize(static_cast<size_t>(out));
    for (int64_t i = 0; i < out; ++i) bias[i] = scalar_at(v.bias, i);
  }
  return std::make_unique<AffineViewLinear>(w, std::move(bias));
}

}  // namespace lmlab
