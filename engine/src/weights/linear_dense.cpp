// Dense Linear over f32 / f16 / bf16 weights, used in place (the memory-mapped file or an expert buffer).
#include <fmt/format.h>

#include "kernels/kernels.h"
#include "lmlab/error.h"
#include "weights/linear.h"
#include "util/half.h"

namespace lmlab {

namespace {

class DenseLinear final : public Linear {
 public:
  DenseLinear(int64_t out, int64_t in, kernels::WeightType type, const uint8_t* w, std::vector<float> bias)
      : Linear(out, in), type_(type), w_(w), bias_(std::move(bias)) {}

  void forward(const float* x, float* y, int64_t n) const override {
    kernels::matmul({type_, w_, out_, in_, x, y, n});
    if (!bias_.empty())
      for (int64_t t = 0; t < n; ++t)
        for (int64_t r = 0; r < out_; ++r) y[t * out_ + r] += bias_[r];
  }

  void dequantize_row(int64_t r, float* out) const override {
    const int64_t base = r * in_;
    switch (type_) {
      case kernels::WeightType::f32:
        for (int64_t i = 0; i < in_; ++i) out[i] = reinterpret_cast<const float*>(w_)[base + i];
        break;
      case kernels::WeightType::f16:
        for (int64_t i = 0; i < in_; ++i) out[i] = f16_to_f32(reinterpret_cast<const uint16_t*>(w_)[base + i]);
        break;
      case kernels::WeightType::bf16:
        for (int64_t i = 0; i < in_; ++i) out[i] = bf16_to_f32(reinterpret_cast<const uint16_t*>(w_)[base + i]);
        break;
    }
  }

  uint64_t weight_bytes() const override {
    return static_cast<uint64_t>(out_ * in_) * (type_ == kernels::WeightType::f32 ? 4 : 2);
  }
  StoredWeight stored() const override { return {.type = type_, .dense = w_, .bias = &bias_}; }
  std::string format() const override {
    return type_ == kernels::WeightType::f32 ? "f32" : type_ == kernels::WeightType::f16 ? "f16" : "bf16";
  }

 private:
  kernels::WeightType type_;
  const uint8_t* w_;  // [out, in]
  std::vector<float> bias_;
};

}  // namespace

std::unique_ptr<Linear> make_dense_linear(int64_t out, int64_t in, kernels::WeightType type, const uint8_t* w,
                                          std::vector<float> bias) {
  return std::make_unique<DenseLinear>(out, in, type, w, std::move(bias));
}

}  // namespace lmlab
