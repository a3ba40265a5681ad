// Which weights the split-int8 affine matmul takes. Its reference (the activations quantized block by block, the
// dequantized weights times x_hat in double) is block_activations.h's; the cpu:: kernels must reach the same
// numbers through integer dots and the folded scale and bias (matmul_affine_i8.h).

#include "kernels/matmul_affine_i8.h"

namespace lmlab::kernels {

bool affine_i8_supported(const AffineWeight& w) {
  return w.bits == 4 && w.group_size > 0 && w.group_size % kI8Block == 0 && w.cols > 0 && w.cols % w.group_size == 0;
}

}  // namespace lmlab::kernels
