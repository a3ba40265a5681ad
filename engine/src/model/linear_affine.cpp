// MLX affine-quantized Linear: not implemented yet (issue 3); fails clearly instead of guessing.
#include "lmlab/error.h"
#include "model/linear.h"

namespace lmlab {

std::unique_ptr<Linear> load_linear_affine(const WeightStore& store, const std::string& prefix, int64_t, int64_t,
                                           const QuantSpec&, int64_t) {
  throw Error(ErrorKind::unsupported, store.dir().string() + ": tensor '" + prefix + ".weight'",
              "MLX affine-quantized weights are not supported yet");
}

}  // namespace lmlab
