// Reference MLX affine quantizer: the original scalar fit (one division, nearbyint and double accumulation per
// element and candidate; 122 candidates plus up to 8 least-squares steps per group). Kept, as kernels/ref/ is
// for the kernels, so tests can check that the fast fit in quantize.cpp is never worse group by group.
// Same contract as quantize_affine (quantize.h).
#pragma once

#include <cstdint>

#include "convert/quantize.h"

namespace lmlab {

void quantize_affine_ref(const float* w, int64_t rows, int64_t cols, int bits, int group_size,
                         kernels::ScaleType scale_type, uint32_t* packed, uint16_t* scales, uint16_t* biases,
                         QuantMethod method = QuantMethod::minmax);

}  // namespace lmlab
