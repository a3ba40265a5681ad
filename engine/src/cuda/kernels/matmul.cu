// Y[n, rows] = X[n, cols] . W^T on the GPU, W in its stored format (dense f32/f16/bf16 or MLX affine).
// Decode (n <= kMaxGemvTokens) is gemv.cu. Prefill runs on cuBLAS's tensor-core GEMMs with every f32 operand
// split into two bf16/f16 parts (v = hi + lo, ~16 mantissa bits; one rounding of X to bf16 was seen to move logits
// by 0.03 and flip MoE routing on the golden fixtures, so prefill keeps decode's precision):
//   - dense bf16/f16: X split in the weight's type, two GEMMs (W Xhi + W Xlo) into one f32 result;
//   - f32: Sgemm;
//   - MLX affine: passes of up to kAffinePassBytes of rows dequantized (s q + b in f32, as the reference) into bf16
//     hi + lo, then three GEMMs, Whi Xhi + Whi Xlo + Wlo Xhi (lo x lo is below f32 rounding). The dequantized
//     rows are ~8x the stored 4-bit bytes but written and read once per chunk of tokens, against ~1000 flops per
//     weight in the GEMMs at 512 tokens (a dequantizing SIMT kernel before this reached ~800 tok/s on qwen3-8b);
//     matrices under 2^20 weights (routers) keep that exact f32 kernel.
#include <algorithm>
#include <string>

#include "cuda/cublas_library.h"
#include "cuda/cuda_check.h"
#include "cuda/kernels/gemv.cuh"
#include "cuda/kernels/kernels_cuda.h"
#include "cuda/kernels/weight_access.cuh"

namespace lmlab::kernels::cuda {

namespace {

// Small affine matrices (under kAffineGemmMinWeights: MoE routers) in f32, exactly as the reference: a tiled
// kernel dequantizing into shared memory. A router's near tie flipped by the 16-bit parts' rounding moved a golden
// logit of qwen3_moe-4bit by 0.6 (decode's GEMV keeps such matrices in f32 for the same reason).
constexpr int64_t kAffineGemmMinWeights = int64_t{1} << 20;

constexpr int kTileRows = 64, kTileTokens = 64, kTileK = 32;
// A router has few rows (8-128 experts) over long columns: its 64 x 64 tiles were 16 blocks for a 512-token chunk
// of qwen3-30b-a3b (a fifth of the MoE prefill's kernel time, H100, twenty-first session). The columns are split
// into up to kMaxKParts ranges whose partial sums go to the scratch and are added in a fixed order (deterministic).
constexpr int kMaxKParts = 8;

// Block (row tile, token tile, column part): y (or the part's [n][rows] partial sums, without the bias) over the
// columns [z per, (z + 1) per).
__global__ void __launch_bounds__(256) gemm_tiled_kernel(DeviceWeight w, const float* __restrict__ x, float* y,
                                                         int64_t n, int64_t per) {
  __shared__ float ws[kTileK][kTileRows + 4];
  __shared__ float xs[kTileK][kTileTokens + 4];
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const int64_t r0 = blockIdx.x * static_cast<int64_t>(kTileRows), t0 = blockIdx.y * static_cast<int64_t>(kTileTokens);
  const int64_t k_begin = blockIdx.z * per, k_end = min(w.cols, k_begin + per);
  float acc[4][4] = {};
  for (int64_t k0 = k_begin; k0 < k_end; k0 += kTileK) {
    for (int i = tid; i < kTileRows * kTileK; i += 256) {
      const int rr = i / kTileK, kk = i % kTileK;
      const int64_t r = r0 + rr, c = k0 + kk;
      ws[kk][rr] = r < w.rows && c < k_end ? load_weight(w, r, c) : 0.0f;
    }
    for (int i = tid; i < kTileTokens * kTileK; i += 256) {
      const int tt = i / kTileK, kk = i % kTileK;
      const int64_t t = t0 + tt, c = k0 + kk;
      xs[kk][tt] = t < n && c < k_end ? x[t * w.cols + c] : 0.0f;
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
      if (r < w.rows && t < n) {
        if (gridDim.z == 1) y[t * w.rows + r] = acc[i][j] + (w.bias ? w.bias[r] : 0.0f);
        else y[(blockIdx.z * n + t) * w.rows + r] = acc[i][j];
      }
    }
}

// y[i] = the parts' partial sums in order (+ the bias of row i % rows).
__global__ void add_k_parts_kernel(const float* part, int parts, float* y, const float* bias, int64_t rows,
                                   int64_t total) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= total) return;
  float v = 0.0f;
  for (int p = 0; p < parts; ++p) v += part[p * total + i];
  y[i] = v + (bias ? bias[i % rows] : 0.0f);
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

// Rows of an affine weight per dequantized pass: the pass holds hi and lo bf16 of each weight (4 bytes). A multiple
// of 128 rows, so every pass's Y columns start 16-byte aligned (cuBLAS fell back to a pre-Hopper kernel for
// qwen3-8b's down projection, whose 1,365-row passes were not: 39% of the prefill).
constexpr uint64_t kAffinePassBytes = uint64_t{64} << 20;
int64_t affine_pass_rows(int64_t rows, int64_t cols) {
  const int64_t fit = static_cast<int64_t>(kAffinePassBytes / (4 * cols));
  return fit >= rows ? rows : std::max<int64_t>(std::min<int64_t>(rows, 128), fit / 128 * 128);
}

__device__ __forceinline__ uint32_t split_pair(float a, float b, uint32_t& lo) {
  const __nv_bfloat16 ha = __float2bfloat16(a), hb = __float2bfloat16(b);
  lo = __bfloat16_as_ushort(__float2bfloat16(a - __bfloat162float(ha))) |
       static_cast<uint32_t>(__bfloat16_as_ushort(__float2bfloat16(b - __bfloat162float(hb)))) << 16;
  return __bfloat16_as_ushort(ha) | static_cast<uint32_t>(__bfloat16_as_ushort(hb)) << 16;
}

// Rows [r0, r0 + n_rows) of an affine weight as bf16 hi + lo ([n_rows, cols] each). 4 and 8 bits: a thread per
// packed word, its 8 / 4 values written as one 16 / 8-byte store per part (an element per thread reached ~0.5 TB/s
// of writes: 31% of qwen3-8b's prefill); other widths an element per thread.
template <int kBits>
__global__ void dequant_split_kernel(DeviceWeight w, int64_t r0, int64_t n_rows, uint16_t* hi, uint16_t* lo) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if constexpr (kBits == 4 || kBits == 8) {
    constexpr int kPer = 32 / kBits;
    const int64_t row_words = w.cols / kPer;
    if (i >= n_rows * row_words) return;
    const int64_t r = r0 + i / row_words, c0 = i % row_words * kPer;
    const AffineWeight& a = w.quant;
    const uint32_t word = a.packed[r * row_words + c0 / kPer];
    const int64_t g = r * (w.cols / a.group_size) + c0 / a.group_size;
    const float s = load_scale(a.scales, g, a.scale_type), b = load_scale(a.biases, g, a.scale_type);
    uint32_t h[kPer / 2], l[kPer / 2];
#pragma unroll
    for (int j = 0; j < kPer; j += 2) {
      const float v0 = s * static_cast<float>((word >> (j * kBits)) & ((1u << kBits) - 1u)) + b;  // as load_affine
      const float v1 = s * static_cast<float>((word >> ((j + 1) * kBits)) & ((1u << kBits) - 1u)) + b;
      h[j / 2] = split_pair(v0, v1, l[j / 2]);
    }
    const int64_t at = (r - r0) * w.cols + c0;
    if constexpr (kBits == 4) {
      *reinterpret_cast<uint4*>(hi + at) = make_uint4(h[0], h[1], h[2], h[3]);
      *reinterpret_cast<uint4*>(lo + at) = make_uint4(l[0], l[1], l[2], l[3]);
    } else {
      *reinterpret_cast<uint2*>(hi + at) = make_uint2(h[0], h[1]);
      *reinterpret_cast<uint2*>(lo + at) = make_uint2(l[0], l[1]);
    }
  } else {
    if (i >= n_rows * w.cols) return;
    const float v = load_weight(w, r0 + i / w.cols, i % w.cols);
    const __nv_bfloat16 h = __float2bfloat16(v);
    hi[i] = __bfloat16_as_ushort(h);
    lo[i] = __bfloat16_as_ushort(__float2bfloat16(v - __bfloat162float(h)));
  }
}

// Launches the dequantizing split for rows [r0, r0 + rows): the word path when the rows are whole words that
// start 16-byte aligned in the pass (cols a multiple of 8, always so for MLX group sizes).
void dequant_split(const DeviceWeight& w, int64_t r0, int64_t rows, uint16_t* hi, uint16_t* lo, cudaStream_t stream) {
  const int bits = w.quant.bits;
  if ((bits == 4 || bits == 8) && w.cols % 8 == 0 && w.cols % w.quant.group_size == 0 &&
      w.quant.group_size % (32 / bits) == 0) {
    const int64_t words = rows * w.cols / (32 / bits);
    if (bits == 4) dequant_split_kernel<4><<<blocks_of(words, 256), 256, 0, stream>>>(w, r0, rows, hi, lo);
    else dequant_split_kernel<8><<<blocks_of(words, 256), 256, 0, stream>>>(w, r0, rows, hi, lo);
  } else {
    dequant_split_kernel<0><<<blocks_of(rows * w.cols, 256), 256, 0, stream>>>(w, r0, rows, hi, lo);
  }
  lmlab::cuda::check_launch("matmul (dequantize affine rows)");
}

// Y[:, r0 .. r0 + m) (+)= A[m, k] . B^T[k, n] with A, B 16-bit of type t, Y f32 [n, ldy] (column-major [ldy, n]).
void gemm16(cublasHandle_t h, const void* a, const void* b, cudaDataType t, float* y, int64_t m, int64_t n, int64_t k,
            int64_t ldy, bool accumulate, const char* what) {
  const float one = 1.0f, zero = 0.0f;
  check_cublas(lmlab::cuda::cublas().gemm_ex(h, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(m), static_cast<int>(n),
                                             static_cast<int>(k), &one, a, t, static_cast<int>(k), b, t,
                                             static_cast<int>(k), accumulate ? &one : &zero, y, CUDA_R_32F,
                                             static_cast<int>(ldy), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
               what);
}

}  // namespace

uint64_t matmul_scratch_bytes(int64_t rows, int64_t cols, int64_t n, bool affine) {
  if (n <= kMaxGemvTokens) return 256;  // decode needs none
  // X as hi and lo 16-bit parts, and an affine weight's dequantized pass (hi and lo bf16).
  const uint64_t x_parts = static_cast<uint64_t>(n * cols + 127) / 128 * 128 * 2 * 2;
  const uint64_t pass = affine ? static_cast<uint64_t>(affine_pass_rows(rows, cols) * cols) * 4 : 0;
  return x_parts + pass + 512;
}

namespace {
void check_no_fusion(const GemvFusion& fusion, int64_t n) {
  if (fusion.norm.w || fusion.accumulate)
    throw Error(ErrorKind::internal, "cuda matmul", std::to_string(n) + " tokens: only a decode GEMV fuses its norm and add");
}
}  // namespace

bool matmul_norms_input(const DeviceWeight& w, int64_t n) { return gemv_norms_input(w, n); }

void matmul(const DeviceWeight& w, const float* x, float* y, int64_t n, void* scratch, cudaStream_t stream,
            const GemvFusion& fusion) {
  if (n == 0 || w.rows == 0) return;
  if (n <= kMaxGemvTokens) {
    const GemvPart part{w, y};
    gemv(&part, 1, x, n, stream, fusion);
    return;
  }
  check_no_fusion(fusion, n);
  if (w.affine && w.rows * w.cols < kAffineGemmMinWeights) {
    // Column parts of at least 4 tiles, whose [n][rows] partial sums fit where the split X would go (n cols floats
    // of matmul_scratch_bytes).
    const int64_t parts =
        scratch ? std::max<int64_t>(1, std::min<int64_t>({kMaxKParts, w.cols / w.rows, w.cols / (4 * kTileK)})) : 1;
    const int64_t per = (w.cols + parts - 1) / parts;
    const dim3 grid(blocks_of(w.rows, kTileRows), blocks_of(n, kTileTokens), static_cast<unsigned>(parts));
    float* partial = parts > 1 ? static_cast<float*>(scratch) : y;
    gemm_tiled_kernel<<<grid, 256, 0, stream>>>(w, x, partial, n, (per + kTileK - 1) / kTileK * kTileK);
    lmlab::cuda::check_launch("matmul (tiled)");
    if (parts > 1) {
      add_k_parts_kernel<<<blocks_of(n * w.rows, 256), 256, 0, stream>>>(partial, static_cast<int>(parts), y, w.bias,
                                                                        w.rows, n * w.rows);
      lmlab::cuda::check_launch("matmul (tiled, column parts)");
    }
    return;
  }
  cublasHandle_t h = cublas_handle();
  check_cublas(lmlab::cuda::cublas().set_stream(h, stream), "set stream");
  const int64_t m = w.rows, k = w.cols;
  if (!w.affine && w.type == WeightType::f32) {
    const float one = 1.0f, zero = 0.0f;
    check_cublas(lmlab::cuda::cublas().sgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(m), static_cast<int>(n),
                                             static_cast<int>(k), &one, static_cast<const float*>(w.dense),
                                             static_cast<int>(k), x, static_cast<int>(k), &zero, y,
                                             static_cast<int>(m)),
                 "sgemm");
  } else {
    // X in the weight's 16-bit type (bf16 for affine), then the GEMMs over the parts.
    const bool bf16 = w.affine || w.type == WeightType::bf16;
    const cudaDataType t = bf16 ? CUDA_R_16BF : CUDA_R_16F;
    auto* x_hi = static_cast<uint16_t*>(scratch);
    uint16_t* x_lo = x_hi + (n * k + 127) / 128 * 128;
    split_kernel<<<blocks_of(n * k, 256), 256, 0, stream>>>(x, x_hi, x_lo, n * k, bf16);
    lmlab::cuda::check_launch("matmul (split X)");
    if (!w.affine) {
      gemm16(h, w.dense, x_hi, t, y, m, n, k, m, false, "gemm (X hi)");
      gemm16(h, w.dense, x_lo, t, y, m, n, k, m, true, "gemm (X lo)");
    } else {
      uint16_t* w_hi = x_lo + (n * k + 127) / 128 * 128;
      const int64_t pass = affine_pass_rows(m, k);
      uint16_t* w_lo = w_hi + pass * k;
      for (int64_t r0 = 0; r0 < m; r0 += pass) {
        const int64_t rows = std::min(pass, m - r0);
        dequant_split(w, r0, rows, w_hi, w_lo, stream);
        gemm16(h, w_hi, x_hi, t, y + r0, rows, n, k, m, false, "gemm (W hi, X hi)");
        gemm16(h, w_hi, x_lo, t, y + r0, rows, n, k, m, true, "gemm (W hi, X lo)");
        gemm16(h, w_lo, x_hi, t, y + r0, rows, n, k, m, true, "gemm (W lo, X hi)");
      }
    }
  }
  if (w.bias) {
    add_bias_kernel<<<blocks_of(w.rows * n, 256), 256, 0, stream>>>(y, w.bias, w.rows, w.rows * n);
    lmlab::cuda::check_launch("matmul (bias)");
  }
}

void matmul_parts(const GemvPart* parts, int n_parts, const float* x, int64_t n, void* scratch, cudaStream_t stream,
                  const GemvFusion& fusion) {
  if (n <= kMaxGemvTokens) return gemv(parts, n_parts, x, n, stream, fusion);
  check_no_fusion(fusion, n);
  for (int i = 0; i < n_parts; ++i) matmul(parts[i].w, x, parts[i].y, n, scratch, stream);
}

void matmul_gathered(const GemvPart* parts, int n_parts, const int32_t* experts, const float* x, int64_t x_div,
                     int64_t n_slots, cudaStream_t stream) {
  gemv_gathered(parts, n_parts, experts, x, x_div, n_slots, stream);
}

void matmul_route(const DeviceWeight& router, const float* x, float* logits, int64_t n, const RouteTail& route,
                  void* scratch, cudaStream_t stream) {
  check_top_k(route.k, router.rows);
  if (n <= kMaxGemvTokens) return gemv_route({router, logits}, x, n, route, stream);
  matmul(router, x, logits, n, scratch, stream);
  route_topk(logits, n, router.rows, route.k, route.renormalize, route.experts, route.weights, stream);
}

void matmul_gate_up(const DeviceWeight& gate, const DeviceWeight& up, GateActivation act, const float* x, float* g,
                    float* u, float* out, int64_t n, void* scratch, cudaStream_t stream, const InputNorm& norm) {
  if (n <= kMaxGemvTokens) return gemv_gate_up({gate, g}, {up, u}, act, out, nullptr, x, 1, 1, n, stream, norm);
  check_no_fusion({norm}, n);
  matmul(gate, x, g, n, scratch, stream);
  matmul(up, x, u, n, scratch, stream);
  gated_mul(act, g, u, out, n * gate.rows, stream);
}

void matmul_gathered_gate_up(const DeviceWeight& gate, const DeviceWeight& up, GateActivation act,
                             const int32_t* experts, const float* x, int64_t x_div, int64_t n_slots, float* g, float* u,
                             float* out, cudaStream_t stream) {
  gemv_gate_up({gate, g}, {up, u}, act, out, experts, x, x_div, n_slots, 1, stream);
}

}  // namespace lmlab::kernels::cuda
