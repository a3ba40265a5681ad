// make_linear_affine_from_bytes: the MLX affine Linear (make_affine_linear) over caller-owned bytes (streamed
// experts): the same AffineWeight and fused kernel as a mapped weight, so a streamed expert computes
// bit-for-bit what the mapped one does (tested in expert_stream_test).
#include <fmt/format.h>

#include "kernels/matmul_affine.h"
#include "lmlab/error.h"
#include "weights/linear_view.h"
#include "util/half.h"

namespace lmlab {

namespace {

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
  return make_affine_linear(w, std::move(bias));
}

}  // namespace lmlab
