// MLX affine-quantized Linear: `<prefix>.weight` U32 [out, in * bits / 32] (bits packed along the input
// dimension, first value in the lowest bits), `<prefix>.scales` and `<prefix>.biases` [out, in / group_size]
// in bf16 / f16 / f32; stacked experts carry a leading [n_experts] axis on all three and `expert` picks one
// slice. The tensors are used in place (mapped, or an expert buffer); forward is the fused kernel in
// kernels/matmul_affine.h. Their checks are make_linear_from_bytes's (linear_view.cpp).
#include <fmt/format.h>

#include "kernels/matmul_affine.h"
#include "lmlab/error.h"
#include "weights/linear.h"

namespace lmlab {

namespace {

class AffineLinear final : public Linear {
 public:
  AffineLinear(const kernels::AffineWeight& w, std::vector<float> bias)
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

}  // namespace

std::unique_ptr<Linear> make_affine_linear(const kernels::AffineWeight& w, std::vector<float> bias) {
  return std::make_unique<AffineLinear>(w, std::move(bias));
}

}  // namespace lmlab
