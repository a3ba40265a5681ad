// A layer's q/k step on the GPU in one launch: per head of the queries and the keys the optional RMSNorm (qwen3,
// gemma3), then the rotary embedding (rotate_half layout). The angle is the f32 product as HF computes it; cos/sin
// in double precision like the reference (few values, cheap). With an f16 cache, the same launch writes the key and
// value rows into it (qk_norm_rope_kv_write).
#include <cuda_fp16.h>

#include <string>

#include "cuda/cuda_check.h"
#include "cuda/kernels/chained_launch.cuh"
#include "cuda/kernels/kernels_cuda.h"
#include "cuda/kernels/reduce.cuh"

namespace lmlab::kernels::cuda {

namespace {

__device__ __forceinline__ void rope_angle(int32_t pos, float inv_freq, float scaling, float& c, float& s) {
  const float angle = static_cast<float>(pos) * inv_freq;
  c = static_cast<float>(cos(static_cast<double>(angle))) * scaling;
  s = static_cast<float>(sin(static_cast<double>(angle))) * scaling;
}

// Block (token, head) over the query heads then the key heads; a thread per element of the head. kWrite: then the
// value heads, and the key and value rows go into the f16 cache as kv_write writes them (the same conversion of
// the same values: one launch fewer per layer).
template <bool kWrite>
__global__ void qk_norm_rope_kernel(float* q, float* k, int64_t n_heads, int64_t n_kv_heads, int64_t D, int64_t half,
                                    const float* q_norm, const float* k_norm, float eps, const int32_t* positions,
                                    const float* inv_freq, float scaling, KvBlocks kv, const float* v_in) {
  chain_enter();
  __shared__ float v[kMaxNormRopeHeadDim];
  const int64_t t = blockIdx.x, hh = blockIdx.y;
  const int d = threadIdx.x;
  // The cache row of KV head h at token t's position (kv_write's layout), K then V after the block's K rows.
  auto cache_row = [&](int64_t h, bool value) {
    const int64_t p = positions[t];
    return kv.blocks[p / kv.block_tokens] + (value ? n_kv_heads * kv.block_tokens * D : 0) +
           (h * kv.block_tokens + p % kv.block_tokens) * D;
  };
  if (kWrite && hh >= n_heads + n_kv_heads) {  // a value head: only the copy into the cache
    const int64_t h = hh - n_heads - n_kv_heads;
    if (d < D) cache_row(h, true)[d] = __half_as_ushort(__float2half(v_in[(t * n_kv_heads + h) * D + d]));
    return;
  }
  const bool is_q = hh < n_heads;
  float* row = is_q ? q + (t * n_heads + hh) * D : k + (t * n_kv_heads + hh - n_heads) * D;
  const float* nw = is_q ? q_norm : k_norm;
  float val = d < D ? row[d] : 0.0f;
  if (nw) {  // the same for the whole block
    const float ss = block_sum(val * val);
    val = d < D ? val * rsqrtf(ss / static_cast<float>(D) + eps) * nw[d] : 0.0f;
  }
  if (d < D) v[d] = val;
  __syncthreads();
  float out0 = 0.0f, out1 = 0.0f;  // row[d], and row[d + half] when d < half
  if (d < half) {
    float c, s;
    rope_angle(positions[t], inv_freq[d], scaling, c, s);
    const float x0 = v[d], x1 = v[d + half];
    out0 = x0 * c - x1 * s;
    out1 = x1 * c + x0 * s;
    row[d] = out0;
    row[d + half] = out1;
  } else if (d >= 2 * half && d < D) {
    out0 = v[d];
    row[d] = out0;  // past the rotated dims (partial rotary)
  }
  if (kWrite && !is_q) {
    uint16_t* dst = cache_row(hh - n_heads, false);
    if (d < half) {
      dst[d] = __half_as_ushort(__float2half(out0));
      dst[d + half] = __half_as_ushort(__float2half(out1));
    } else if (d >= 2 * half && d < D) {
      dst[d] = __half_as_ushort(__float2half(out0));
    }
  }
}

}  // namespace

namespace {
// One launch of qk_norm_rope_kernel<kWrite> over the n_heads query heads, the n_kv_heads key heads and, writing,
// as many value heads.
template <bool kWrite>
void launch_qk(float* q, float* k, const float* v, const KvBlocks& kv, int64_t n_tokens, int64_t n_heads,
               int64_t n_kv_heads, int64_t head_dim, int64_t rot_dim, const float* q_norm, const float* k_norm, float eps,
               const int32_t* positions, const float* inv_freq, float attention_scaling, cudaStream_t stream) {
  if (n_tokens == 0) return;
  if (head_dim > kMaxNormRopeHeadDim)
    throw Error(ErrorKind::unsupported, "cuda qk_norm_rope", "head_dim above " + std::to_string(kMaxNormRopeHeadDim));
  const int threads = static_cast<int>((head_dim + 31) / 32 * 32);
  const dim3 grid(static_cast<unsigned>(n_tokens), static_cast<unsigned>(n_heads + (kWrite ? 2 : 1) * n_kv_heads));
  launch_chained(kWrite ? "qk_norm_rope + kv_write" : "qk_norm_rope", qk_norm_rope_kernel<kWrite>, grid, threads, 0,
                 stream, q, k, n_heads, n_kv_heads, head_dim, rot_dim / 2, q_norm, k_norm, eps, positions, inv_freq,
                 attention_scaling, kv, v);
}
}  // namespace

void qk_norm_rope(float* q, float* k, int64_t n_tokens, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
                  int64_t rot_dim, const float* q_norm, const float* k_norm, float eps, const int32_t* positions,
                  const float* inv_freq, float attention_scaling, cudaStream_t stream) {
  launch_qk<false>(q, k, nullptr, KvBlocks{}, n_tokens, n_heads, n_kv_heads, head_dim, rot_dim, q_norm, k_norm, eps,
                   positions, inv_freq, attention_scaling, stream);
}

void qk_norm_rope_kv_write(float* q, float* k, const float* v, const KvBlocks& kv, int64_t n_tokens, int64_t n_heads,
                           int64_t rot_dim, const float* q_norm, const float* k_norm, float eps,
                           const int32_t* positions, const float* inv_freq, float attention_scaling,
                           cudaStream_t stream) {
  launch_qk<true>(q, k, v, kv, n_tokens, n_heads, kv.n_kv_heads, kv.head_dim, rot_dim, q_norm, k_norm, eps, positions,
                  inv_freq, attention_scaling, stream);
}

}  // namespace lmlab::kernels::cuda
