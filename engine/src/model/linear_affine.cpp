// MLX affine-quantized Linear: `<prefix>.weight` U32 [out, in * bits / 32] (bits packed along the input
// dimension, first value in the lowest bits), `<prefix>.scales` and `<prefix>.biases` [out, in / group_size]
// in bf16 / f16 / f32; stacked experts carry a leading [n_experts] axis on all three and `expert` picks one
// slice. The tensors are used in place (memory-mapped); forward is the fused kernel in kernels/matmul_affine.h.
#include <fmt/format.h>

#include "kernels/matmul_affine.h"
#include "lmlab/error.h"
#include "model/linear.h"

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
  StoredWeight stored() const override { return {true, kernels::WeightType::f32, nullptr, w_, &bias_}; }

 private:
  kernels::AffineWeight w_;
  std::vector<float> bias_;
};

}  // namespace

std::unique_ptr<Linear> make_affine_linear(const kernels::AffineWeight& w, std::vector<float> bias) {
  return std::make_unique<AffineLinear>(w, std::move(bias));
}

namespace {

std::string where_of(const TensorRef& t) { return t.file->path().string() + ": tensor '" + t.info->name + "'"; }

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

kernels::ScaleType scale_type(const TensorRef& t) {
  switch (t.info->dtype) {
    case DType::bf16: return kernels::ScaleType::bf16;
    case DType::f16: return kernels::ScaleType::f16;
    case DType::f32: return kernels::ScaleType::f32;
    default:
      throw Error(ErrorKind::unsupported, where_of(t),
                  fmt::format("dtype {} is not supported for quantization scales or biases (bf16, f16, f32 are)",
                              dtype_name(t.info->dtype)));
  }
}

// Checks `t` has shape [n_experts?, rows, cols] and returns a pointer to the selected expert's slice.
const uint8_t* slice(const TensorRef& t, int64_t rows, int64_t cols, int64_t expert, const std::string& what) {
  std::vector<int64_t> want = {rows, cols};
  if (expert >= 0) want.insert(want.begin(), t.info->shape.empty() ? 0 : t.info->shape[0]);
  if (t.info->shape != want || (expert >= 0 && expert >= want[0]))
    throw Error(ErrorKind::model_format, where_of(t),
                fmt::format("{} has shape {}, the config implies {}{}", what, shape_str(t.info->shape),
                            expert >= 0 ? "[n_experts, " + std::to_string(rows) + ", " + std::to_string(cols) + "]"
                                        : shape_str(want),
                            expert >= 0 ? fmt::format(" (expert {})", expert) : ""));
  const uint64_t slice_bytes = static_cast<uint64_t>(rows * cols) * dtype_size(t.info->dtype);
  return t.data() + (expert >= 0 ? static_cast<uint64_t>(expert) * slice_bytes : 0);
}

}  // namespace

std::unique_ptr<Linear> load_linear_affine(const WeightStore& store, const std::string& prefix, int64_t out,
                                           int64_t in, const QuantSpec& quant, int64_t expert) {
  const TensorRef w = store.require(prefix + ".weight");
  const bool has_scales = store.contains(prefix + ".scales");
  // mlx-lm's rule: a layer of a quantized model is quantized when it has scales; others stay dense.
  if (w.info->dtype != DType::u32 && !has_scales) return load_linear(store, prefix, out, in, QuantSpec{}, expert);
  if (w.info->dtype != DType::u32)
    throw Error(ErrorKind::model_format, where_of(w),
                fmt::format("has scales but dtype {}; quantized weights are U32-packed", dtype_name(w.info->dtype)));
  if (quant.bits <= 0)
    throw Error(ErrorKind::model_format, where_of(w),
                "is U32 (quantized) but config.json has no \"quantization\" (bits, group_size) for it");
  if (!kernels::affine_params_supported(quant.bits, quant.group_size, in))
    throw Error(ErrorKind::unsupported, where_of(w),
                fmt::format("{}-bit quantization with group size {} over {} input features is not supported "
                            "(bits 2-6 or 8, group size a multiple of 32 dividing the input size)",
                            quant.bits, quant.group_size, in));
  const int64_t words = in * quant.bits / 32, groups = in / quant.group_size;
  if (!w.info->shape.empty() && w.info->shape.back() != words && w.info->shape.back() > 0 &&
      (w.info->shape.back() * 32) % in == 0)
    throw Error(ErrorKind::model_format, where_of(w),
                fmt::format("packs {} u32 words per row: {} bits for {} input features, but config.json says {} bits",
                            w.info->shape.back(), w.info->shape.back() * 32 / in, in, quant.bits));
  const TensorRef s = store.require(prefix + ".scales");
  const TensorRef b = store.require(prefix + ".biases");
  const kernels::ScaleType st = scale_type(s);
  if (b.info->dtype != s.info->dtype)
    throw Error(ErrorKind::model_format, where_of(b),
                fmt::format("dtype {} differs from the scales' {}", dtype_name(b.info->dtype), dtype_name(s.info->dtype)));
  kernels::AffineWeight aw;
  aw.packed = reinterpret_cast<const uint32_t*>(slice(w, out, words, expert, "the packed weight"));
  aw.scales = slice(s, out, groups, expert, fmt::format("scales (group size {})", quant.group_size));
  aw.biases = slice(b, out, groups, expert, fmt::format("biases (group size {})", quant.group_size));
  aw.scale_type = st;
  aw.bits = quant.bits;
  aw.group_size = quant.group_size;
  aw.rows = out;
  aw.cols = in;
  std::vector<float> bias;
  if (store.contains(prefix + ".bias")) bias = load_vector_f32(store, prefix + ".bias", out, 0.0f);
  return std::make_unique<AffineLinear>(aw, std::move(bias));
}

}  // namespace lmlab
