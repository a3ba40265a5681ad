// load_linear / load_vector_f32: tensors of the memory-mapped safetensors files as TensorViews, so that they
// go through make_linear_from_bytes, the same checks a streamed expert gets.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "lmlab/error.h"
#include "weights/linear.h"
#include "weights/linear_view.h"

namespace lmlab {

namespace {

// Tensor `name`, or with expert >= 0 that expert's slice of a stacked [n_experts, ...] tensor.
TensorView tensor_view(const WeightStore& store, const std::string& name, int64_t expert) {
  const TensorRef r = store.require(name);
  TensorView v;
  v.data = r.data();
  v.dtype = r.info->dtype;
  v.shape = r.info->shape;
  v.where = fmt::format("{}: tensor '{}'", r.file->path().string(), r.info->name);
  if (expert < 0) return v;
  v.where += fmt::format(" (expert {})", expert);
  if (v.shape.empty() || expert >= v.shape[0])
    throw Error(ErrorKind::model_format, v.where,
                fmt::format("is not stacked over experts (shape [{}])", fmt::join(v.shape, ", ")));
  v.data += static_cast<uint64_t>(expert) * (r.info->nbytes / static_cast<uint64_t>(v.shape[0]));
  v.shape.erase(v.shape.begin());
  return v;
}

}  // namespace

std::vector<float> load_vector_f32(const WeightStore& store, const std::string& name, int64_t n, float offset) {
  return view_to_f32(tensor_view(store, name, -1), n, offset);
}

std::unique_ptr<Linear> load_linear(const WeightStore& store, const std::string& prefix, int64_t out, int64_t in,
                                    const QuantSpec& quant, int64_t expert) {
  auto optional = [&](const std::string& suffix) {
    return store.contains(prefix + suffix) ? tensor_view(store, prefix + suffix, expert) : TensorView{};
  };
  const LinearView v{tensor_view(store, prefix + ".weight", expert), optional(".scales"), optional(".biases"),
                     optional(".bias")};
  return make_linear_from_bytes(v, out, in, quant, /*resident=*/true);
}

}  // namespace lmlab
