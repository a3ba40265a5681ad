// Gated activations on the GPU, element-wise: SiLU (llama, qwen, mixtral) and tanh GELU (gemma).
#include "cuda/cuda_check.h"
#include "cuda/kernels/chained_launch.cuh"
#include "cuda/kernels/kernels_cuda.h"

namespace lmlab::kernels::cuda {

namespace {

__device__ __forceinline__ float gated_activation(GateActivation act, float g, float u) {
  if (act == GateActivation::silu) return g / (1.0f + expf(-g)) * u;
  constexpr float kSqrt2OverPi = 0.7978845608028654f;
  return 0.5f * g * (1.0f + tanhf(kSqrt2OverPi * (g + 0.044715f * g * g * g))) * u;
}

__global__ void gated_mul_kernel(GateActivation act, const float* gate, const float* up, float* out, int64_t n) {
  chain_enter();
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  out[i] = gated_activation(act, gate[i], up[i]);
}

}  // namespace

void gated_mul(GateActivation act, const float* gate, const float* up, float* out, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  launch_chained(act == GateActivation::silu ? "silu_mul" : "gelu_tanh_mul", gated_mul_kernel,
                 static_cast<unsigned>((n + 255) / 256), 256, 0, stream, act, gate, up, out, n);
}

}  // namespace lmlab::kernels::cuda
