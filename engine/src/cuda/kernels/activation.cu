// Gated activations on the GPU, element-wise: SiLU (llama, qwen, mixtral) and tanh GELU (gemma).
#include "cuda/cuda_check.h"
#include "cuda/kernels/chained_launch.cuh"
#include "cuda/kernels/kernels_cuda.h"

namespace lmlab::kernels::cuda {

namespace {

__global__ void silu_mul_kernel(const float* gate, const float* up, float* out, int64_t n) {
  chain_enter();
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  const float g = gate[i];
  out[i] = g / (1.0f + expf(-g)) * up[i];
}

__global__ void gelu_tanh_mul_kernel(const float* gate, const float* up, float* out, int64_t n) {
  chain_enter();
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  constexpr float kSqrt2OverPi = 0.7978845608028654f;
  const float g = gate[i];
  out[i] = 0.5f * g * (1.0f + tanhf(kSqrt2OverPi * (g + 0.044715f * g * g * g))) * up[i];
}

unsigned blocks(int64_t n) { return static_cast<unsigned>((n + 255) / 256); }

}  // namespace

void silu_mul(const float* gate, const float* up, float* out, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  launch_chained("silu_mul", silu_mul_kernel, blocks(n), 256, 0, stream, gate, up, out, n);
}

void gelu_tanh_mul(const float* gate, const float* up, float* out, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  launch_chained("gelu_tanh_mul", gelu_tanh_mul_kernel, blocks(n), 256, 0, stream, gate, up, out, n);
}

}  // namespace lmlab::kernels::cuda
