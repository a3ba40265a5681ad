// make_linear_from_bytes: shape checks for both formats, and the dense Linear over caller-owned bytes.
#include "weights/linear_view.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "kernels/kernels.h"
#include "lmlab/error.h"
#include "util/half.h"

namespace lmlab {

namespace {

void check_shape(const TensorView& t, const std::vector<int64_t>& want) {
  if (t.shape != want)
    throw Error(ErrorKind::model_format, t.where,
                fmt::format("shape [{}] but the config implies [{}]", fmt::join(t.shape, ", "), fmt::join(want, ", ")));
}

kernels::ScaleType scale_type(const TensorView& t) {
  switch (t.dtype) {
    case DType::bf16: return kernels::ScaleType::bf16;
    case DType::f16: return kernels::ScaleType::f16;
    case DType::f32: return kernels::ScaleType::f32;
    default:
      throw Error(ErrorKind::unsupported, t.where,
                  fmt::format("dtype {} is not supported for quantization scales or biases (bf16, f16, f32 are)",
                              dtype_name(t.dtype)));
  }
}

// MLX affine: weight U32 [out, in * bits / 32], scales and biases [out, in / group_size] of one float dtype.
kernels::AffineWeight affine_weight(const LinearView& v, int64_t out, int64_t in, const QuantSpec& quant) {
  if (v.weight.dtype != DType::u32)
    throw Error(ErrorKind::model_format, v.weight.where,
                fmt::format("has scales but dtype {}; quantized weights are U32-packed", dtype_name(v.weight.dtype)));
  if (quant.bits <= 0)
    throw Error(ErrorKind::model_format, v.weight.where,
                "is U32 (quantized) but config.json has no \"quantization\" (bits, group_size) for it");
  if (!kernels::affine_params_supported(quant.bits, quant.group_size, in))
    throw Error(ErrorKind::unsupported, v.weight.where,
                fmt::format("{}-bit quantization with group size {} over {} input features is not supported "
                            "(bits 2-6 or 8, group size a multiple of 32 dividing the input size)",
                            quant.bits, quant.group_size, in));
  const int64_t words = in * quant.bits / 32, groups = in / quant.group_size;
  // A config whose bits disagree with the packing: say what the tensor implies.
  const int64_t packed = v.weight.shape.empty() ? 0 : v.weight.shape.back();
  if (packed != words && packed > 0 && (packed * 32) % in == 0)
    throw Error(ErrorKind::model_format, v.weight.where,
                fmt::format("packs {} u32 words per row: {} bits for {} input features, but config.json says {} bits",
                            packed, packed * 32 / in, in, quant.bits));
  if (!v.scales || !v.biases)
    throw Error(ErrorKind::model_format, v.weight.where, "quantized weight without scales and biases");
  const kernels::ScaleType st = scale_type(v.scales);
  if (v.biases.dtype != v.scales.dtype)
    throw Error(ErrorKind::model_format, v.biases.where,
                fmt::format("dtype {} differs from the scales' {}", dtype_name(v.biases.dtype), dtype_name(v.scales.dtype)));
  check_shape(v.weight, {out, words});
  check_shape(v.scales, {out, groups});
  check_shape(v.biases, {out, groups});
  kernels::AffineWeight w;
  w.packed = reinterpret_cast<const uint32_t*>(v.weight.data);
  w.scales = v.scales.data;
  w.biases = v.biases.data;
  w.scale_type = st;
  w.bits = quant.bits;
  w.group_size = quant.group_size;
  w.rows = out;
  w.cols = in;
  return w;
}

kernels::WeightType dense_type(const TensorView& t) {
  switch (t.dtype) {
    case DType::f32: return kernels::WeightType::f32;
    case DType::f16: return kernels::WeightType::f16;
    case DType::bf16: return kernels::WeightType::bf16;
    default:
      throw Error(ErrorKind::unsupported, t.where, fmt::format("weight dtype {} is not supported", dtype_name(t.dtype)));
  }
}

}  // namespace

std::vector<float> view_to_f32(const TensorView& t, int64_t n, float offset) {
  check_shape(t, {n});
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    switch (t.dtype) {
      case DType::f32: v[i] = reinterpret_cast<const float*>(t.data)[i]; break;
      case DType::f16: v[i] = f16_to_f32(reinterpret_cast<const uint16_t*>(t.data)[i]); break;
      case DType::bf16: v[i] = bf16_to_f32(reinterpret_cast<const uint16_t*>(t.data)[i]); break;
      default:
        throw Error(ErrorKind::unsupported, t.where,
                    fmt::format("dtype {} is not supported for a vector", dtype_name(t.dtype)));
    }
    v[i] += offset;
  }
  return v;
}

std::unique_ptr<Linear> make_linear_from_bytes(const LinearView& v, int64_t out, int64_t in, const QuantSpec& quant,
                                               bool resident) {
  if (!v.weight) throw Error(ErrorKind::internal, v.weight.where, "make_linear_from_bytes without a weight");
  std::vector<float> bias = v.bias ? view_to_f32(v.bias, out) : std::vector<float>{};
  // mlx-lm's rule: a tensor of a quantized model is quantized when it has scales (or is U32-packed).
  if (v.weight.dtype == DType::u32 || v.scales)
    return make_affine_linear(affine_weight(v, out, in, quant), std::move(bias), resident);
  check_shape(v.weight, {out, in});
  return make_dense_linear(out, in, dense_type(v.weight), v.weight.data, std::move(bias));
}

}  // namespace lmlab
