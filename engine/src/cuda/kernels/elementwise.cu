// The small element-wise glue of the GPU forward: embedding rows, residual adds, logit soft-capping.
#include <cmath>

#include "cuda/cuda_check.h"
#include "cuda/kernels/chained_launch.cuh"
#include "cuda/kernels/kernels_cuda.h"
#include "cuda/kernels/weight_access.cuh"

namespace lmlab::kernels::cuda {

namespace {

unsigned blocks(int64_t n) { return static_cast<unsigned>((n + 255) / 256); }

__global__ void embed_kernel(DeviceWeight w, const int32_t* tokens, int64_t n, float scale, float* x) {
  chain_enter();
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n * w.cols) return;
  const int64_t t = i / w.cols, c = i % w.cols;
  x[i] = load_weight(w, tokens[t], c) * scale;
}

__global__ void add_kernel(float* x, const float* y, int64_t n) {
  chain_enter();
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) x[i] += y[i];
}

__global__ void softcap_kernel(float* x, int64_t n, float cap) {
  chain_enter();
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) x[i] = cap * tanhf(x[i] / cap);
}

}  // namespace

void embed_rows(const DeviceWeight& w, const int32_t* tokens, int64_t n, float scale, float* x, cudaStream_t stream) {
  if (n == 0) return;
  launch_chained("embed_rows", embed_kernel, blocks(n * w.cols), 256, 0, stream, w, tokens, n, scale, x);
}

void add_inplace(float* x, const float* y, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  launch_chained("add_inplace", add_kernel, blocks(n), 256, 0, stream, x, y, n);
}

void softcap(float* x, int64_t n, float cap, cudaStream_t stream) {
  if (n == 0) return;
  launch_chained("softcap", softcap_kernel, blocks(n), 256, 0, stream, x, n, cap);
}

}  // namespace lmlab::kernels::cuda
