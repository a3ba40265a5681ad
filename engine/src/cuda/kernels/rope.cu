// Rotary embedding (rotate_half layout) on the GPU: one thread per (token, head, rotated pair). The angle is
// the f32 product as HF computes it; cos/sin in double precision like the reference (few values, cheap).
#include "cuda/cuda_check.h"
#include "cuda/kernels/kernels_cuda.h"

namespace lmlab::kernels::cuda {

namespace {

__global__ void rope_kernel(float* x, int64_t n_tokens, int64_t n_heads, int64_t head_dim, int64_t half,
                            const int32_t* positions, const float* inv_freq, float scaling) {
  const int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (idx >= n_tokens * n_heads * half) return;
  const int64_t i = idx % half, th = idx / half, t = th / n_heads;
  const float angle = static_cast<float>(positions[t]) * inv_freq[i];
  const float c = static_cast<float>(cos(static_cast<double>(angle))) * scaling;
  const float s = static_cast<float>(sin(static_cast<double>(angle))) * scaling;
  float* xr = x + th * head_dim;
  const float x0 = xr[i], x1 = xr[i + half];
  xr[i] = x0 * c - x1 * s;
  xr[i + half] = x1 * c + x0 * s;
}

}  // namespace

void rope(float* x, int64_t n_tokens, int64_t n_heads, int64_t head_dim, int64_t rot_dim, const int32_t* positions,
          const float* inv_freq, float attention_scaling, cudaStream_t stream) {
  const int64_t half = rot_dim / 2, total = n_tokens * n_heads * half;
  if (total == 0) return;
  rope_kernel<<<static_cast<unsigned>((total + 255) / 256), 256, 0, stream>>>(x, n_tokens, n_heads, head_dim, half,
                                                                              positions, inv_freq, attention_scaling);
  lmlab::cuda::check_launch("rope");
}

}  // namespace lmlab::kernels::cuda
