// Y[n, rows] = X[n, cols] . W^T on the GPU, W in its stored format (dense f32/f16/bf16 or MLX affine).
// Decode (n <= kMaxGemvTokens): a warp per kRows output rows streams them once with 16-byte loads for all n
// tokens; when rows alone give too few warps to fill the SMs (k/v projections, small models) the columns
// are split over several warps (split-K) and a second kernel sums the partials. Prefill: cuBLAS for dense
// bf16/f16 with X split into two 16-bit parts (x = hi + lo, two GEMMs into one f32 result: X keeps ~16
// mantissa bits, so prefill logits match the f32 reference as decode's do; one rounding of X to bf16 was
// seen to move logits by 0.03 and flip MoE routing on the golden fixtures), Sgemm for f32, and a tiled
// kernel that dequantizes affine weights into shared memory.
#include <algorithm>

#include "cuda/cublas_library.h"
#include "cuda/cuda_check.h"
#include "cuda/kernels/kernels_cuda.h"
#include "cuda/kernels/reduce.cuh"
#include "cuda/kernels/weight_access.cuh"

namespace lmlab::kernels::cuda {

namespace {

constexpr int kMaxGemvTokens = 8;
constexpr int kWarpsPerBlock = 4;
constexpr int kTargetWarps = 132 * 16;  // 16 warps per SM of an H100/H200

// ---- decode: dense rows ----

template <WeightType T>
struct Elem;
template <>
struct Elem<WeightType::f32> {
  using type = float;
  static constexpr int kVec = 4;
  __device__ static float get(const float* p, int i) { return p[i]; }
};
template <>
struct Elem<WeightType::bf16> {
  using type = uint16_t;
  static constexpr int kVec = 8;
  __device__ static float get(const uint16_t* p, int i) { return bf16_to_float(p[i]); }
};
template <>
struct Elem<WeightType::f16> {
  using type = uint16_t;
  static constexpr int kVec = 8;
  __device__ static float get(const uint16_t* p, int i) { return f16_to_float(p[i]); }
};

// A warp computes kRows consecutive rows: each lane reads its slice of x once per token for all of them (x
// comes from L1 / L2, so a row per warp spent more load bandwidth on x than on the weights: 8x for 4-bit), and
// issues every row's weight loads for a slice before using the first (a load at a time left most of the HBM
// bandwidth idle). Rows past the matrix are computed on row 0's data and dropped.
constexpr int kRows = 4;
using Acc = float[kRows][kMaxGemvTokens];

__device__ __forceinline__ int64_t clamp_row(int64_t r, int64_t rows) { return r < rows ? r : 0; }

// acc[j][t] += this lane's share of row r0 + j times x[t] over columns [c0, c1). `vec`: 16-byte slices (c0, c1,
// cols multiples of the vector width, rows 16-byte aligned); else scalar.
template <WeightType T>
__device__ void dense_rows_dot(const typename Elem<T>::type* w, int64_t rows, int64_t r0, const float* x,
                               int64_t cols, int64_t c0, int64_t c1, int n, bool vec, Acc& acc) {
  using E = Elem<T>;
  const int lane = threadIdx.x & 31;
  const typename E::type* row[kRows];
#pragma unroll
  for (int j = 0; j < kRows; ++j) row[j] = w + clamp_row(r0 + j, rows) * cols;
  if (vec) {
    const int64_t step = 32 * E::kVec;
    for (int64_t c = c0 + lane * E::kVec; c < c1; c += step) {
      uint4 raw[kRows];
#pragma unroll
      for (int j = 0; j < kRows; ++j) raw[j] = __ldg(reinterpret_cast<const uint4*>(row[j] + c));
      float wf[kRows][E::kVec];
#pragma unroll
      for (int j = 0; j < kRows; ++j)
#pragma unroll
        for (int i = 0; i < E::kVec; ++i) wf[j][i] = E::get(reinterpret_cast<const typename E::type*>(&raw[j]), i);
#pragma unroll
      for (int t = 0; t < kMaxGemvTokens; ++t) {
        if (t >= n) break;
        const float4* xv = reinterpret_cast<const float4*>(x + t * cols + c);
#pragma unroll
        for (int i = 0; i < E::kVec / 4; ++i) {
          const float4 xx = xv[i];
#pragma unroll
          for (int j = 0; j < kRows; ++j)
            acc[j][t] += wf[j][4 * i] * xx.x + wf[j][4 * i + 1] * xx.y + wf[j][4 * i + 2] * xx.z + wf[j][4 * i + 3] * xx.w;
        }
      }
    }
  } else {
    for (int64_t c = c0 + lane; c < c1; c += 32) {
      float wf[kRows];
#pragma unroll
      for (int j = 0; j < kRows; ++j) wf[j] = E::get(row[j] + c, 0);
#pragma unroll
      for (int t = 0; t < kMaxGemvTokens; ++t) {
        if (t >= n) break;
        const float xt = x[t * cols + c];
#pragma unroll
        for (int j = 0; j < kRows; ++j) acc[j][t] += wf[j] * xt;
      }
    }
  }
}

// q < 2^23 as a float without the integer-to-float conversion, which runs at a quarter of the FMA rate on
// Hopper and was the 4-bit GEMV's limit: 2^23 + q has q as its mantissa, exactly.
__device__ __forceinline__ float small_uint_to_float(uint32_t q) {
  return __uint_as_float(0x4B000000u | q) - 8388608.0f;
}

// The BITS words of a 32-value chunk at p.
template <int BITS>
__device__ __forceinline__ void load_chunk(const uint32_t* p, uint32_t (&wd)[BITS]) {
  if constexpr (BITS % 4 == 0) {
#pragma unroll
    for (int i = 0; i < BITS / 4; ++i) {
      const uint4 v = __ldg(reinterpret_cast<const uint4*>(p) + i);
      wd[4 * i] = v.x, wd[4 * i + 1] = v.y, wd[4 * i + 2] = v.z, wd[4 * i + 3] = v.w;
    }
  } else if constexpr (BITS % 2 == 0) {
#pragma unroll
    for (int i = 0; i < BITS / 2; ++i) {
      const uint2 v = __ldg(reinterpret_cast<const uint2*>(p) + i);
      wd[2 * i] = v.x, wd[2 * i + 1] = v.y;
    }
  } else {
#pragma unroll
    for (int i = 0; i < BITS; ++i) wd[i] = __ldg(p + i);
  }
}

// Affine rows: a lane takes chunks of 32 values (one group's share: group_size is a multiple of 32) in [c0, c1)
// (multiples of 32); y = sum over groups of s * sum(q x) + b * sum(x), sum(x) shared by the rows.
template <int BITS>
__device__ void affine_rows_dot(const AffineWeight& w, int64_t r0, const float* x, int64_t c0, int64_t c1, int n,
                                Acc& acc) {
  const int lane = threadIdx.x & 31;
  const int64_t words_per_row = w.cols * BITS / 32, groups = w.cols / w.group_size;
  int64_t r[kRows];
#pragma unroll
  for (int j = 0; j < kRows; ++j) r[j] = clamp_row(r0 + j, w.rows);
  for (int64_t c = c0 + lane * 32; c < c1; c += 32 * 32) {
    uint32_t wd[kRows][BITS];
#pragma unroll
    for (int j = 0; j < kRows; ++j) load_chunk<BITS>(w.packed + r[j] * words_per_row + (c / 32) * BITS, wd[j]);
    float s[kRows], b[kRows];
#pragma unroll
    for (int j = 0; j < kRows; ++j) {
      const int64_t g = r[j] * groups + c / w.group_size;
      s[j] = load_scale(w.scales, g, w.scale_type), b[j] = load_scale(w.biases, g, w.scale_type);
    }
#pragma unroll
    for (int t = 0; t < kMaxGemvTokens; ++t) {
      if (t >= n) break;
      const float4* xv = reinterpret_cast<const float4*>(x + t * w.cols + c);
      float qx[kRows] = {}, xs = 0.0f;
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        const float4 xx = xv[i];
        const float xe[4] = {xx.x, xx.y, xx.z, xx.w};
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          constexpr uint32_t mask = (1u << BITS) - 1u;
          const int bit = (4 * i + e) * BITS, word = bit >> 5, off = bit & 31;
          xs += xe[e];
#pragma unroll
          for (int j = 0; j < kRows; ++j) {
            uint32_t q = wd[j][word] >> off;
            if (off + BITS > 32) q |= wd[j][word + 1] << (32 - off);
            qx[j] += small_uint_to_float(q & mask) * xe[e];
          }
        }
      }
#pragma unroll
      for (int j = 0; j < kRows; ++j) acc[j][t] += s[j] * qx[j] + b[j] * xs;
    }
  }
}

__device__ void rows_dot(const DeviceWeight& w, int64_t r0, const float* x, int64_t c0, int64_t c1, int n, bool vec,
                         Acc& acc) {
  if (w.affine) {
    switch (w.quant.bits) {
      case 2: affine_rows_dot<2>(w.quant, r0, x, c0, c1, n, acc); break;
      case 3: affine_rows_dot<3>(w.quant, r0, x, c0, c1, n, acc); break;
      case 4: affine_rows_dot<4>(w.quant, r0, x, c0, c1, n, acc); break;
      case 5: affine_rows_dot<5>(w.quant, r0, x, c0, c1, n, acc); break;
      case 6: affine_rows_dot<6>(w.quant, r0, x, c0, c1, n, acc); break;
      default: affine_rows_dot<8>(w.quant, r0, x, c0, c1, n, acc); break;
    }
    return;
  }
  switch (w.type) {
    case WeightType::bf16:
      dense_rows_dot<WeightType::bf16>(static_cast<const uint16_t*>(w.dense), w.rows, r0, x, w.cols, c0, c1, n, vec,
                                       acc);
      break;
    case WeightType::f16:
      dense_rows_dot<WeightType::f16>(static_cast<const uint16_t*>(w.dense), w.rows, r0, x, w.cols, c0, c1, n, vec,
                                      acc);
      break;
    default:
      dense_rows_dot<WeightType::f32>(static_cast<const float*>(w.dense), w.rows, r0, x, w.cols, c0, c1, n, vec, acc);
      break;
  }
}

// The warp's first row.
__device__ __forceinline__ int64_t warp_row0() {
  return (blockIdx.x * static_cast<int64_t>(kWarpsPerBlock) + (threadIdx.x >> 5)) * kRows;
}

// Warp (rows, split): columns [split * chunk, ...). splits == 1 writes y (+ bias), else partial[split][t][row].
__global__ void __launch_bounds__(kWarpsPerBlock * 32) gemv_kernel(DeviceWeight w, const float* __restrict__ x,
                                                                   float* y, int n, int64_t chunk, bool vec,
                                                                   float* partial) {
  const int64_t r0 = warp_row0();
  if (r0 >= w.rows) return;
  const int64_t c0 = blockIdx.y * chunk, c1 = min(w.cols, c0 + chunk);
  Acc acc = {};
  rows_dot(w, r0, x, c0, c1, n, vec, acc);
  const bool lane0 = (threadIdx.x & 31) == 0;
#pragma unroll
  for (int j = 0; j < kRows; ++j) {
    const int64_t r = r0 + j;
#pragma unroll
    for (int t = 0; t < kMaxGemvTokens; ++t) {
      if (t >= n) break;
      const float v = warp_sum(acc[j][t]);
      if (!lane0 || r >= w.rows) continue;
      if (gridDim.y == 1) y[t * w.rows + r] = v + (w.bias ? w.bias[r] : 0.0f);
      else partial[(blockIdx.y * static_cast<int64_t>(n) + t) * w.rows + r] = v;
    }
  }
}

__global__ void split_sum_kernel(const float* partial, const float* bias, float* y, int64_t rows, int64_t n,
                                 int splits) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= rows * n) return;
  float v = bias ? bias[i % rows] : 0.0f;
  for (int s = 0; s < splits; ++s) v += partial[s * rows * n + i];
  y[i] = v;
}

// Gathered: block (row group, slot); the slot's expert comes from the device.
__global__ void __launch_bounds__(kWarpsPerBlock * 32) gemv_gathered_kernel(DeviceWeight w, const int32_t* experts,
                                                                            const float* __restrict__ x,
                                                                            int64_t x_div, float* y, bool vec) {
  const int64_t r0 = warp_row0();
  if (r0 >= w.rows) return;
  const int64_t slot = blockIdx.y;
  const DeviceWeight we = select_expert(w, experts[slot]);
  Acc acc = {};
  rows_dot(we, r0, x + (slot / x_div) * w.cols, 0, w.cols, 1, vec, acc);
#pragma unroll
  for (int j = 0; j < kRows; ++j) {
    const float v = warp_sum(acc[j][0]);
    const int64_t r = r0 + j;
    if ((threadIdx.x & 31) == 0 && r < w.rows) y[slot * w.rows + r] = v + (we.bias ? we.bias[r] : 0.0f);
  }
}

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

// 16-byte loads need every row start and the vector width to line up.
bool can_vectorize(const DeviceWeight& w) {
  if (w.affine) return true;  // chunks of 32 values: always word-aligned (cols % 32 == 0)
  const int vec = w.type == WeightType::f32 ? 4 : 8;
  return w.cols % vec == 0 && reinterpret_cast<uintptr_t>(w.dense) % 16 == 0;
}

int split_count(const DeviceWeight& w) {
  const int64_t warps = (w.rows + kRows - 1) / kRows;
  if (warps >= kTargetWarps) return 1;
  const int64_t unit = 32 * 32;  // one pass of a warp over affine chunks; a multiple of the dense vector
  const int64_t max_splits = std::max<int64_t>(1, w.cols / unit);
  return static_cast<int>(std::min<int64_t>(max_splits, (kTargetWarps + warps - 1) / warps));
}

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
  // Partials: at most ceil(kTargetWarps / warps) splits of rows x n, warps = rows / kRows.
  const uint64_t split = n <= kMaxGemvTokens ? static_cast<uint64_t>(kTargetWarps) * kRows * n * 4 + rows * n * 4 : 0;
  const uint64_t rounded = n > kMaxGemvTokens ? static_cast<uint64_t>(n * cols) * 2 * 2 + 256 : 0;
  return std::max(split, rounded) + 256;
}

void matmul(const DeviceWeight& w, const float* x, float* y, int64_t n, void* scratch, cudaStream_t stream) {
  if (n == 0 || w.rows == 0) return;
  if (n <= kMaxGemvTokens) {
    const int splits = split_count(w);
    int64_t chunk = (w.cols + splits - 1) / splits;
    chunk = (chunk + 1023) / 1024 * 1024;  // whole warp passes, so every split starts vector-aligned
    const int used = static_cast<int>((w.cols + chunk - 1) / chunk);
    dim3 grid(blocks_of(w.rows, kWarpsPerBlock * kRows), static_cast<unsigned>(used));
    float* partial = static_cast<float*>(scratch);
    gemv_kernel<<<grid, kWarpsPerBlock * 32, 0, stream>>>(w, x, y, static_cast<int>(n), chunk, can_vectorize(w),
                                                         partial);
    lmlab::cuda::check_launch("matmul (gemv)");
    if (used > 1) {
      split_sum_kernel<<<blocks_of(w.rows * n, 256), 256, 0, stream>>>(partial, w.bias, y, w.rows, n, used);
      lmlab::cuda::check_launch("matmul (split-K sum)");
    }
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

void matmul_gathered(const DeviceWeight& w, const int32_t* experts, const float* x, int64_t x_div, float* y,
                     int64_t n_slots, cudaStream_t stream) {
  if (n_slots == 0) return;
  dim3 grid(blocks_of(w.rows, kWarpsPerBlock * kRows), static_cast<unsigned>(n_slots));
  gemv_gathered_kernel<<<grid, kWarpsPerBlock * 32, 0, stream>>>(w, experts, x, x_div, y, can_vectorize(w));
  lmlab::cuda::check_launch("matmul_gathered");
}

}  // namespace lmlab::kernels::cuda
