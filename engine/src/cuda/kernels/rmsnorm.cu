// RMSNorm on the GPU: one block per row, f32 sum of squares reduced through shared memory; and the residual
// add fused with the next norm (x += y; h = norm(x)), which the forward does twice per layer (after a MoE block,
// with y the combined experts' outputs).
#include <algorithm>
#include <cstdint>

#include "cuda/cuda_check.h"
#include "cuda/kernels/chained_launch.cuh"
#include "cuda/kernels/expert_order.cuh"
#include "cuda/kernels/kernels_cuda.h"
#include "cuda/kernels/reduce.cuh"

namespace lmlab::kernels::cuda {

namespace {

// Rows of dim % 4 == 0 (every model's hidden and head sizes): float4 loads, a row's values kept in registers
// between the sum of squares and the scaling (a block of 256 threads walking a 4096 row one float at a time
// took ~10 us on decode, latency-bound).
constexpr int kMaxVecPerThread = 4;

__global__ void rmsnorm_vec_kernel(const float4* __restrict__ x, const float4* __restrict__ w, float4* y, int64_t dim4,
                                   float eps) {
  chain_enter();
  const float4* xr = x + blockIdx.x * dim4;
  float4* yr = y + blockIdx.x * dim4;
  float4 v[kMaxVecPerThread];
  float ss = 0.0f;
#pragma unroll
  for (int j = 0; j < kMaxVecPerThread; ++j) {
    const int64_t i = threadIdx.x + j * static_cast<int64_t>(blockDim.x);
    v[j] = i < dim4 ? xr[i] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    ss += v[j].x * v[j].x + v[j].y * v[j].y + v[j].z * v[j].z + v[j].w * v[j].w;
  }
  ss = block_sum(ss);
  const float inv = rsqrtf(ss / static_cast<float>(dim4 * 4) + eps);
#pragma unroll
  for (int j = 0; j < kMaxVecPerThread; ++j) {
    const int64_t i = threadIdx.x + j * static_cast<int64_t>(blockDim.x);
    if (i >= dim4) break;
    const float4 ww = w[i];
    yr[i] = make_float4(v[j].x * inv * ww.x, v[j].y * inv * ww.y, v[j].z * inv * ww.z, v[j].w * inv * ww.w);
  }
}

__global__ void rmsnorm_kernel(const float* __restrict__ x, const float* __restrict__ w, float* y, int64_t dim,
                               float eps) {
  chain_enter();
  const float* xr = x + blockIdx.x * dim;
  float* yr = y + blockIdx.x * dim;
  float ss = 0.0f;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) ss += xr[i] * xr[i];
  ss = block_sum(ss);
  const float inv = rsqrtf(ss / static_cast<float>(dim) + eps);
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) yr[i] = xr[i] * inv * w[i];
}

// Where add_rmsnorm's y comes from: a buffer, or (MoE) the sum of the token's expert outputs weighted by their
// routing weights in ascending expert order, as moe_combine sums them (the same products in the same order, so the
// same y: no launch and no round trip through memory for it).
struct BufferY {
  const float4* y;
  int64_t dim4;
  static constexpr int kMaxThreads = 1024;
  struct Row {};
  __device__ void prepare(Row&) const {}
  __device__ float4 at(const Row&, int64_t i) const { return y[blockIdx.x * dim4 + i]; }
};
struct CombinedY {
  const float4* slot_out;  // [n k, dim4]
  const int32_t* experts;  // [n, k]
  const float* weights;    // [n, k]
  int k;
  int64_t dim4;
  // At most 512 threads (128 registers each): the loads at() keeps in flight spilled under a 1024-thread block's 64;
  // longer rows take moe_combine then add_rmsnorm, the same floats.
  static constexpr int kMaxThreads = 512;
  struct Row {  // the row's slots in moe_combine's order and their weights
    int slot[kMaxTopK];
    float wt[kMaxTopK];
  };
  // Warp 0 reads the row's k experts and weights once (thread 0 sorting them in global memory, a load per comparison,
  // held up the whole block); slot j's place is its stable rank by expert, experts_ascending's order.
  __device__ void prepare(Row& row) const {
    if (threadIdx.x < 32) {
      const int lane = threadIdx.x;
      const int64_t base = blockIdx.x * static_cast<int64_t>(k);
      const int32_t e = lane < k ? experts[base + lane] : 0;
      const float wt = lane < k ? weights[base + lane] : 0.0f;
      int rank = 0;
#pragma unroll
      for (int j = 0; j < kMaxTopK; ++j) {
        const int32_t ej = __shfl_sync(0xffffffffu, e, j);
        rank += j < k && (ej < e || (ej == e && j < lane));
      }
      if (lane < k) row.slot[rank] = lane, row.wt[rank] = wt;
    }
    __syncthreads();
  }
  // The slots' outputs loaded kLoadsAtOnce at a time (8: the usual k), all before their products are added in
  // moe_combine's order (a load per product serialised them).
  static constexpr int kLoadsAtOnce = 8;
  __device__ float4 at(const Row& row, int64_t i) const {
    const float4* out = slot_out + blockIdx.x * static_cast<int64_t>(k) * dim4 + i;  // [k, dim4] at column i
    float4 acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll
    for (int j0 = 0; j0 < kMaxTopK; j0 += kLoadsAtOnce) {
      if (j0 >= k) break;
      float4 v[kLoadsAtOnce];
#pragma unroll
      for (int j = 0; j < kLoadsAtOnce; ++j)
        if (j0 + j < k) v[j] = out[row.slot[j0 + j] * dim4];
#pragma unroll
      for (int j = 0; j < kLoadsAtOnce; ++j)
        if (j0 + j < k) {
          const float wt = row.wt[j0 + j];
          acc.x += wt * v[j].x, acc.y += wt * v[j].y, acc.z += wt * v[j].z, acc.w += wt * v[j].w;
        }
    }
    return acc;
  }
};

// x += y, then h = norm(x) * w, rows of dim4 float4s (at most kMaxVecPerThread per thread), blocks of at most
// Y::kMaxThreads threads.
template <class Y>
__global__ void __launch_bounds__(Y::kMaxThreads, 1)
    add_rmsnorm_kernel(float4* x, Y y, const float4* __restrict__ w, float4* h, int64_t dim4, float eps) {
  chain_enter();
  __shared__ typename Y::Row row;
  y.prepare(row);
  float4* xr = x + blockIdx.x * dim4;
  float4* hr = h + blockIdx.x * dim4;
  float4 v[kMaxVecPerThread];
  float ss = 0.0f;
#pragma unroll
  for (int j = 0; j < kMaxVecPerThread; ++j) {
    const int64_t i = threadIdx.x + j * static_cast<int64_t>(blockDim.x);
    v[j] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (i < dim4) {
      const float4 a = xr[i], b = y.at(row, i);
      v[j] = make_float4(a.x + b.x, a.y + b.y, a.z + b.z, a.w + b.w);
    }
    ss += v[j].x * v[j].x + v[j].y * v[j].y + v[j].z * v[j].z + v[j].w * v[j].w;
  }
  // x written once every load is issued (a store to x between them holds the next ones back: y's memory may be x's)
#pragma unroll
  for (int j = 0; j < kMaxVecPerThread; ++j) {
    const int64_t i = threadIdx.x + j * static_cast<int64_t>(blockDim.x);
    if (i < dim4) xr[i] = v[j];
  }
  ss = block_sum(ss);
  const float inv = rsqrtf(ss / static_cast<float>(dim4 * 4) + eps);
#pragma unroll
  for (int j = 0; j < kMaxVecPerThread; ++j) {
    const int64_t i = threadIdx.x + j * static_cast<int64_t>(blockDim.x);
    if (i >= dim4) break;
    const float4 ww = w[i];
    hr[i] = make_float4(v[j].x * inv * ww.x, v[j].y * inv * ww.y, v[j].z * inv * ww.z, v[j].w * inv * ww.w);
  }
}

int vec_threads(int64_t dim4) {  // a warp multiple covering the row in at most kMaxVecPerThread float4s each
  const int64_t per = std::max<int64_t>(32, (dim4 + kMaxVecPerThread - 1) / kMaxVecPerThread);
  return static_cast<int>(std::min<int64_t>(1024, (per + 31) / 32 * 32));
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// Rows the float4 kernels take: whole float4s, at most kMaxVecPerThread of them per thread of a 1024-thread block.
bool vec_rows(int64_t dim) { return dim % 4 == 0 && dim / 4 <= 1024 * kMaxVecPerThread; }

}  // namespace

void rmsnorm(const float* x, const float* w, float* y, int64_t n_rows, int64_t dim, float eps, cudaStream_t stream) {
  if (n_rows == 0) return;
  const int64_t dim4 = dim / 4;
  if (vec_rows(dim) && aligned16(x) && aligned16(w) && aligned16(y)) {
    launch_chained("rmsnorm", rmsnorm_vec_kernel, static_cast<unsigned>(n_rows), vec_threads(dim4), 0, stream,
                   reinterpret_cast<const float4*>(x), reinterpret_cast<const float4*>(w), reinterpret_cast<float4*>(y),
                   dim4, eps);
  } else {
    launch_chained("rmsnorm", rmsnorm_kernel, static_cast<unsigned>(n_rows), 256, 0, stream, x, w, y, dim, eps);
  }
}

void add_rmsnorm(float* x, const float* y, const float* w, float* h, int64_t n_rows, int64_t dim, float eps,
                 cudaStream_t stream) {
  if (n_rows == 0) return;
  const int64_t dim4 = dim / 4;
  if (vec_rows(dim) && aligned16(x) && aligned16(y) && aligned16(w) && aligned16(h)) {
    launch_chained("add_rmsnorm", add_rmsnorm_kernel<BufferY>, static_cast<unsigned>(n_rows), vec_threads(dim4), 0,
                   stream, reinterpret_cast<float4*>(x), BufferY{reinterpret_cast<const float4*>(y), dim4},
                   reinterpret_cast<const float4*>(w), reinterpret_cast<float4*>(h), dim4, eps);
    return;
  }
  add_inplace(x, y, n_rows * dim, stream);
  rmsnorm(x, w, h, n_rows, dim, eps, stream);
}

void moe_combine_add_rmsnorm(float* x, const float* slot_out, const int32_t* experts, const float* weights, int64_t k,
                             float* y, const float* w, float* h, int64_t n_rows, int64_t dim, float eps,
                             cudaStream_t stream) {
  if (n_rows == 0) return;
  const int64_t dim4 = dim / 4;
  if (vec_rows(dim) && vec_threads(dim4) <= CombinedY::kMaxThreads && k <= kMaxTopK && aligned16(x) &&
      aligned16(slot_out) && aligned16(w) && aligned16(h)) {
    const CombinedY cy{reinterpret_cast<const float4*>(slot_out), experts, weights, static_cast<int>(k), dim4};
    launch_chained("moe_combine + add_rmsnorm", add_rmsnorm_kernel<CombinedY>, static_cast<unsigned>(n_rows),
                   vec_threads(dim4), 0, stream, reinterpret_cast<float4*>(x), cy, reinterpret_cast<const float4*>(w),
                   reinterpret_cast<float4*>(h), dim4, eps);
    return;
  }
  moe_combine(slot_out, experts, weights, n_rows, k, dim, y, stream);
  add_rmsnorm(x, y, w, h, n_rows, dim, eps, stream);
}

}  // namespace lmlab::kernels::cuda
