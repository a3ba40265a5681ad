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

std::unique_ptr<Linear> make_linear_from_bytes(const LinearView& v, int64_t out, int64_t in, const QuantSpec& quant) {
  if (!v.weight) throw Error(ErrorKind::internal, v.weight.where, "make_linear_from_bytes without a weight");
  if (v.bias) check_shape(v.bias, {out});
  if (v.weight.dtype == DType::u32 || v.scales) {  // mlx-lm: quantized when it has scales
    if (quant.bits <= 0 || quant.group_size <= 0 || (in * quant.bits) % 32 != 0 || in % quant.group_size != 0)
      throw Error(ErrorKind::model_format, v.weight.where,
                  fmt::format("quantized weight without a usable quantization spec (bits {}, group size {})",
                              quant.bits, quant.group_size));
    if (v.weight.dtype != DType::u32)
      throw Error(ErrorKind::model_format, v.weight.where,
                  fmt::format("quantized weight of dtype {} (want U32)", dtype_name(v.weight.dtype)));
    if (!v.scales || !v.biases)
      throw Error(ErrorKind::model_format, v.weight.where, "quantized weight without scales and biases");
    check_shape(v.weight, {out, in * quant.bits / 32});
    check_shape(v.scales, {out, in / quant.group_size});
    check_shape(v.biases, {out, in / quant.group_size});
    if (v.scales.dtype != v.biases.dtype)
      throw Error(ErrorKind::model_format, v.biases.where,
                  fmt::format("biases of dtype {} but scales of dtype {}", dtype_name(v.biases.dtype),
                              dtype_name(v.scales.dtype)));
    return make_linear_affine_from_bytes(v, out, in, quant);
  }
  check_shape(v.weight, {out, in});
  kernels::WeightType type;
  switch (v.weight.dtype) {
    case DType::f32: type = kernels::WeightType::f32; break;
    case DType::f16: type = kernels::WeightType::f16; break;
    case DType::bf16: type = kernels::WeightType::bf16; break;
    default:
      throw Error(ErrorKind::unsupported, v.weight.where,
                  fmt::format("weight dtype {} is not supported", dtype_name(v.weight.dtype)));
  }
  std::vector<float> bias;
  if (v.bias) {
    bias.resize(static_cast<size_t>(out));
    for (int64_t i = 0; i < out; ++i) bias[i] = scalar_at(v.bias, i);
  }
  return make_dense_linear(out, in, type, v.weight.data, std::move(bias));
}

}  // namespace lmlab
