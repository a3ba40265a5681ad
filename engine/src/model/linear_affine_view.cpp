// make_linear_affine_from_bytes: the MLX affine Linear over caller-owned bytes (streamed experts).
// Until the affine Linear (linear_affine.cpp) takes over this function, quantized experts cannot be streamed
// and say so, naming the tensor. To connect: define make_linear_affine_from_bytes in linear_affine.cpp with
// the affine Linear's constructor over v.weight.data / v.scales.data / v.biases.data (+ v.bias), have
// load_linear_affine build a LinearView from the WeightStore and call it, and delete this file.
#include "lmlab/error.h"
#include "model/linear_view.h"

namespace lmlab {

std::unique_ptr<Linear> make_linear_affine_from_bytes(const LinearView& v, int64_t, int64_t, const QuantSpec&) {
  throw Error(ErrorKind::unsupported, v.weight.where, "MLX affine-quantized weights are not supported yet");
}

}  // namespace lmlab
