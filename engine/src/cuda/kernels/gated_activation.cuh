// act(gate) * up of the gated MLPs: one definition for the element-wise kernel (activation.cu) and the decode GEMV
// that applies it to the gate and up rows it has just computed (gemv.cu), so both give the same floats.
#pragma once

#include "cuda/kernels/kernels_cuda.h"

namespace lmlab::kernels::cuda {

__device__ __forceinline__ float gated_activation(GateActivation act, float g, float u) {
  if (act == GateActivation::silu) return g / (1.0f + expf(-g)) * u;
  constexpr float kSqrt2OverPi = 0.7978845608028654f;
  return 0.5f * g * (1.0f + tanhf(kSqrt2OverPi * (g + 0.044715f * g * g * g))) * u;
}

}  // namespace lmlab::kernels::cuda
