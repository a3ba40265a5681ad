// Gated activations on the GPU, element-wise: SiLU (llama, qwen, mixtral) and tanh GELU (gemma).
#include "cuda/cuda_check.h"
#include "cuda/kernels/chained_launch.cuh"
#include "cuda/kernels/gated_activation.cuh"
#include "cuda/kernels/kernels_cuda.h"

namespace lmlab::kernels::cuda {

namespace {

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
