// Which weights the integer-dot affine matmul takes. Its reference (the activations quantized block by block, the
// dequantized weights times x_hat in double) is block_activations.h's; the cpu:: kernel must reach the same
// numbers through integer dots and the folded scale and bias (matmul_affine_i16.h).

#include "kernels/matmul_affine_i16.h"

namespace lmlab::kernels {

bool affine_i16_supported(const AffineWeight& w) {
  return (w.bits == 4 || w.bits == 8) && w.group_size > 0 && w.group_size % kI16Block == 0 && w.cols > 0 &&
         w.cols % w.group_size == 0;
}

}  // namespace lmlab::kernels
