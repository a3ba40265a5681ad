// Y[n, rows] = X[n, cols] . W^T on the GPU, W in its stored format (dense f32/f16/bf16 or MLX affine).
// Decode (n <= kMaxGemvTokens) is gemv.cu. Prefill: cuBLAS for dense bf16/f16 with X split into two 16-bit
// parts (x = hi + lo, two GEMMs into one f32 result: X keeps ~16 mantissa bits, so prefill logits match the f32
// reference as decode's do; one rounding of X to bf16 was seen to move logits by 0.03 and flip MoE routing on
// the golden fixtures), Sgemm for f32, and a tiled kernel that dequantizes affine weights into shared memory.
#include <algorithm>

#include "cuda/cublas_library.h"
#include "cuda/cuda_check.h"
#include "cuda/kernels/gemv.cuh"
#include "cuda/kernels/kernels_cuda.h"
#include "cuda/kernels/reduce.cuh"
#include "cuda/kernels/weight_access.cuh"

namespace lmlab::kernels::cuda {

namespace {

// ---- prefill: tiled, dequantizing ----

constexpr int kTileRows = 64, kTileTokens = 64, kTileK = 32;

__global__ void __launch_bounds__(256) gemm_tiled_kernel(DeviceWeight w, const float* __restrict__ x, float* y,
                                                         int64_t n) {
  __shared__ float ws[kTileK][kTileRows + 4];
  __shared__ float xs[kTileK][kTileTokens + 4];
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const int64_t r0 = blockIdx.x * static_cast<int64_t>(kTileRows), t0 = blockIdx.y * static_cast<int64_t>(kTileTokens);
  float acc[4][4] = {};
  for (int64_t k0 = 0; k0 < w.cols; k0 += kTileK) {
    for (int i = tid; i < kTileRows * kTileK; i += 256) {
      const int rr = i / kTileK, kk = i % kTileK;
      const int64_t r = r0 + rr, c = k0 + kk;
      ws[kk][rr] = r < w.rows && c < w.cols ? load_weight(w, r, c) : 0.0f;
    }
    for (int i = tid; i < kTileTokens * kTileK; i += 256) {
      const int tt = i / kTileK, kk = i % kTileK;
      const int64_t t = t0 + tt, c = k0 + kk;
      xs[kk][tt] = t < n && c < w.cols ? x[t * w.cols + c] : 0.0f;
    }
    __syncthreads();
#pragma unroll 8
    for (int kk = 0; kk < kTileK; ++kk) {
      float a[4], b[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) a[i] = ws[kk][ty * 4 + i], b[i] = xs[kk][tx * 4 + i];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] += a[i] * b[j];
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int64_t r = r0 + ty * 4 + i, t = t0 + tx * 4 + j;
      if (r < w.rows && t < n) y[t * w.rows + r] = acc[i][j] + (w.bias ? w.bias[r] : 0.0f);
    }
}

// x = hi + lo in the weight's 16-bit type.
__global__ void split_kernel(const float* x, uint16_t* hi, uint16_t* lo, int64_t n, bool bf16) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  if (bf16) {
    const __nv_bfloat16 h = __float2bfloat16(x[i]);
    hi[i] = __bfloat16_as_ushort(h);
    lo[i] = __bfloat16_as_ushort(__float2bfloat16(x[i] - __bfloat162float(h)));
  } else {
    const __half h = __float2half(x[i]);
    hi[i] = __half_as_ushort(h);
    lo[i] = __half_as_ushort(__float2half(x[i] - __half2float(h)));
  }
}

__global__ void add_bias_kernel(float* y, const float* bias, int64_t rows, int64_t total) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < total) y[i] += bias[i % rows];
}

unsigned blocks_of(int64_t n, int per) { return static_cast<unsigned>((n + per - 1) / per); }

cublasHandle_t cublas_handle() {
  thread_local cublasHandle_t handle = [] {
    cublasHandle_t h;
    if (lmlab::cuda::cublas().create(&h) != CUBLAS_STATUS_SUCCESS)
      throw Error(ErrorKind::internal, "cublas", "cublasCreate failed");
    return h;
  }();
  return handle;
}

void check_cublas(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS)
    throw Error(ErrorKind::internal, std::string("cublas: ") + what, lmlab::cuda::cublas().status_string(s));
}

bool use_cublas(const DeviceWeight& w, int64_t n) { return !w.affine && n > kMaxGemvTokens; }

}  // namespace

uint64_t matmul_scratch_bytes(int64_t rows, int64_t cols, int64_t n) {
  (void)rows;
  // Prefill: X rounded to hi and lo 16-bit parts. Decode needs none.
  return n > kMaxGemvTokens ? static_cast<uint64_t>(n * cols) * 2 * 2 + 512 : 256;
}

void matmul(const DeviceWeight& w, const float* x, float* y, int64_t n, void* scratch, cudaStream_t stream) {
  if (n == 0 || w.rows == 0) return;
  if (n <= kMaxGemvTokens) {
    const GemvPart part{w, y};
    gemv(&part, 1, x, n, stream);
    return;
  }
  if (use_cublas(w, n)) {
    cublasHandle_t h = cublas_handle();
    check_cublas(lmlab::cuda::cublas().set_stream(h, stream), "set stream");
    const float one = 1.0f, zero = 0.0f;
    const int m = static_cast<int>(w.rows), k = static_cast<int>(w.cols), nn = static_cast<int>(n);
    if (w.type == WeightType::f32) {
      check_cublas(lmlab::cuda::cublas().sgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, m, nn, k, &one, static_cast<const float*>(w.dense), k, x,
                               k, &zero, y, m),
                   "sgemm");
    } else {
      const bool bf16 = w.type == WeightType::bf16;
      auto* hi = static_cast<uint16_t*>(scratch);
      uint16_t* lo = hi + (n * w.cols + 127) / 128 * 128;
      split_kernel<<<blocks_of(n * w.cols, 256), 256, 0, stream>>>(x, hi, lo, n * w.cols, bf16);
      lmlab::cuda::check_launch("matmul (split X)");
      const cudaDataType t = bf16 ? CUDA_R_16BF : CUDA_R_16F;
      check_cublas(lmlab::cuda::cublas().gemm_ex(h, CUBLAS_OP_T, CUBLAS_OP_N, m, nn, k, &one, w.dense, t, k, hi, t, k, &zero, y,
                                CUDA_R_32F, m, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                   "gemm (hi)");
      check_cublas(lmlab::cuda::cublas().gemm_ex(h, CUBLAS_OP_T, CUBLAS_OP_N, m, nn, k, &one, w.dense, t, k, lo, t, k, &one, y,
                                CUDA_R_32F, m, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                   "gemm (lo)");
    }
    if (w.bias) {
      add_bias_kernel<<<blocks_of(w.rows * n, 256), 256, 0, stream>>>(y, w.bias, w.rows, w.rows * n);
      lmlab::cuda::check_launch("matmul (bias)");
    }
    return;
  }
  dim3 grid(blocks_of(w.rows, kTileRows), blocks_of(n, kTileTokens));
  gemm_tiled_kernel<<<grid, 256, 0, stream>>>(w, x, y, n);
  lmlab::cuda::check_launch("matmul (tiled)");
}

void matmul_parts(const GemvPart* parts, int n_parts, const float* x, int64_t n, void* scratch, cudaStream_t stream) {
  if (n <= kMaxGemvTokens) return gemv(parts, n_parts, x, n, stream);
  for (int i = 0; i < n_parts; ++i) matmul(parts[i].w, x, parts[i].y, n, scratch, stream);
}

void matmul_gathered(const GemvPart* parts, int n_parts, const int32_t* experts, const float* x, int64_t x_div,
                     int64_t n_slots, cudaStream_t stream) {
  gemv_gathered(parts, n_parts, experts, x, x_div, n_slots, stream);
}

}  // namespace lmlab::kernels::cuda
