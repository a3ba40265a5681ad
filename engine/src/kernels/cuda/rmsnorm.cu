// RMSNorm on the GPU: one block per row, f32 sum of squares reduced through shared memory.
#include "cuda/cuda_check.h"
#include "kernels/cuda/kernels_cuda.h"
#include "kernels/cuda/reduce.cuh"

namespace lmlab::kernels::cuda {

namespace {

__global__ void rmsnorm_kernel(const float* __restrict__ x, const float* __restrict__ w, float* y, int64_t dim,
                               float eps) {
  const float* xr = x + blockIdx.x * dim;
  float* yr = y + blockIdx.x * dim;
  float ss = 0.0f;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) ss += xr[i] * xr[i];
  ss = block_sum(ss);
  const float inv = rsqrtf(ss / static_cast<float>(dim) + eps);
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) yr[i] = xr[i] * inv * w[i];
}

}  // namespace

void rmsnorm(const float* x, const float* w, float* y, int64_t n_rows, int64_t dim, float eps, cudaStream_t stream) {
  if (n_rows == 0) return;
  rmsnorm_kernel<<<static_cast<unsigned>(n_rows), 256, 0, stream>>>(x, w, y, dim, eps);
  lmlab::cuda::check_launch("rmsnorm");
}

}  // namespace lmlab::kernels::cuda
