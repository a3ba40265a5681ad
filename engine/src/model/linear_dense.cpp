// Dense Linear over f32 / f16 / bf16 weights, read in place from the memory-mapped file.
#include <fmt/format.h>

#include "kernels/kernels.h"
#include "lmlab/error.h"
#include "model/linear.h"
#include "util/half.h"

namespace lmlab {

namespace {

kernels::WeightType weight_type(DType t, const std::string& where) {
  switch (t) {
    case DType::f32: return kernels::WeightType::f32;
    case DType::f16: return kernels::WeightType::f16;
    case DType::bf16: return kernels::WeightType::bf16;
    default: throw Error(ErrorKind::unsupported, where, fmt::format("weight dtype {} is not supported", dtype_name(t)));
  }
}

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
  StoredWeight stored() const override { return {false, type_, w_, {}, &bias_}; }
  std::string format() const override {
    return type_ == kernels::WeightType::f32 ? "f32" : type_ == kernels::WeightType::f16 ? "f16" : "bf16";
  }

 private:
  kernels::WeightType type_;
  const uint8_t* w_;  // [out, in]
  std::vector<float> bias_;
};

float scalar_at(const TensorRef& r, int64_t i) {
  const uint8_t* p = r.data();
  switch (r.info->dtype) {
    case DType::f32: return reinterpret_cast<const float*>(p)[i];
    case DType::f16: return f16_to_f32(reinterpret_cast<const uint16_t*>(p)[i]);
    case DType::bf16: return bf16_to_f32(reinterpret_cast<const uint16_t*>(p)[i]);
    default:
      throw Error(ErrorKind::unsupported, r.file->path().string() + ": tensor '" + r.info->name + "'",
                  fmt::format("dtype {} is not supported for a vector", dtype_name(r.info->dtype)));
  }
}

}  // namespace

std::unique_ptr<Linear> make_dense_linear(int64_t out, int64_t in, kernels::WeightType type, const uint8_t* w,
                                          std::vector<float> bias) {
  return std::make_unique<DenseLinear>(out, in, type, w, std::move(bias));
}

// Defined in linear_affine.cpp: MLX affine-quantized weights (U32-packed weight + scales + biases).
std::unique_ptr<Linear> load_linear_affine(const WeightStore& store, const std::string& prefix, int64_t out,
                                           int64_t in, const QuantSpec& quant, int64_t expert);

std::vector<float> load_vector_f32(const WeightStore& store, const std::string& name, int64_t n, float offset) {
  const int64_t shape[] = {n};
  TensorRef r = store.require(name, shape);
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[i] = scalar_at(r, i) + offset;
  return v;
}

std::unique_ptr<Linear> load_linear(const WeightStore& store, const std::string& prefix, int64_t out, int64_t in,
                                    const QuantSpec& quant, int64_t expert) {
  TensorRef w = store.require(prefix + ".weight");
  if (w.info->dtype == DType::u32 || quant.bits > 0)
    return load_linear_affine(store, prefix, out, in, quant, expert);
  const std::string where = w.file->path().string() + ": tensor '" + w.info->name + "'";
  std::vector<int64_t> shape = {out, in};
  if (expert >= 0) shape.insert(shape.begin(), w.info->shape.empty() ? 0 : w.info->shape[0]);
  if (w.info->shape != shape || (expert >= 0 && expert >= shape[0]))
    throw Error(ErrorKind::model_format, where,
                fmt::format("shape does not match the config (want [{}, {}]{})", out, in,
                            expert >= 0 ? fmt::format(" for expert {}", expert) : ""));
  const kernels::WeightType type = weight_type(w.info->dtype, where);
  const uint64_t slice_bytes = static_cast<uint64_t>(out * in) * dtype_size(w.info->dtype);
  const uint8_t* data = w.data() + (expert >= 0 ? expert * slice_bytes : 0);
  std::vector<float> bias;
  if (store.contains(prefix + ".bias")) bias = load_vector_f32(store, prefix + ".bias", out);
  return std::make_unique<DenseLinear>(out, in, type, data, std::move(bias));
}

}  // namespace lmlab
