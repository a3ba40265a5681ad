// Reference gated activations: SiLU (llama, qwen, mixtral) and tanh-approximated GELU (gemma).
#include <cmath>

#include "kernels/kernels.h"

namespace lmlab::kernels::ref {

void silu_mul(const float* gate, const float* up, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const double g = gate[i];
    out[i] = static_cast<float>(g / (1.0 + std::exp(-g)) * up[i]);
  }
}

void gelu_tanh_mul(const float* gate, const float* up, float* out, int64_t n) {
  constexpr double kSqrt2OverPi = 0.7978845608028654;
  for (int64_t i = 0; i < n; ++i) {
    const double g = gate[i];
    const double gelu = 0.5 * g * (1.0 + std::tanh(kSqrt2OverPi * (g + 0.044715 * g * g * g)));
    out[i] = static_cast<float>(gelu * up[i]);
  }
}

}  // namespace lmlab::kernels::ref
