// MoE routing on the GPU, so the decode step never waits for the host: a warp per token takes the softmax over its
// experts' logits and picks the k most probable (route_token.cuh, the reference's tie rule). moe_combine sums each
// token's expert outputs in ascending expert order, as the CPU does, so both add in the same order.
#include <cmath>

#include "cuda/cuda_check.h"
#include "cuda/kernels/chained_launch.cuh"
#include "cuda/kernels/expert_order.cuh"
#include "cuda/kernels/kernels_cuda.h"
#include "cuda/kernels/reduce.cuh"
#include "cuda/kernels/route_token.cuh"

namespace lmlab::kernels::cuda {

namespace {

// A warp per token (a thread per token took 120 us per call on 128 experts: k serial passes of E expf each).
__global__ void route_topk_kernel(const float* logits, int64_t n_tokens, int64_t E, int64_t k, bool renormalize,
                                  int32_t* experts, float* weights) {
  chain_enter();
  const int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x / 32) + (threadIdx.x >> 5);
  if (t >= n_tokens) return;
  route_token(logits + t * E, E, k, renormalize, experts + t * k, weights + t * k);
}

__global__ void moe_combine_kernel(const float* slot_out, const int32_t* experts, const float* weights,
                                   int64_t n_tokens, int64_t k, int64_t hidden, float* out) {
  chain_enter();
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n_tokens * hidden) return;
  const int64_t t = i / hidden, d = i % hidden;
  int order[kMaxTopK];
  experts_ascending(experts + t * k, static_cast<int>(k), order);
  float acc = 0.0f;
  for (int j = 0; j < k; ++j) {
    const int64_t slot = t * k + order[j];
    acc += weights[slot] * slot_out[slot * hidden + d];
  }
  out[i] = acc;
}

}  // namespace

void check_top_k(int64_t k, int64_t n_experts) {
  if (k > kMaxTopK || k > n_experts)
    throw Error(ErrorKind::unsupported, "cuda route_topk", "top-k must be at most 16 and at most the expert count");
}

void route_topk(const float* logits, int64_t n_tokens, int64_t n_experts, int64_t k, bool renormalize,
                int32_t* experts, float* weights, cudaStream_t stream) {
  check_top_k(k, n_experts);
  if (n_tokens == 0) return;
  launch_chained("route_topk", route_topk_kernel, static_cast<unsigned>((n_tokens + 3) / 4), 128, 0, stream, logits,
                 n_tokens, n_experts, k, renormalize, experts, weights);
}

void moe_combine(const float* slot_out, const int32_t* experts, const float* weights, int64_t n_tokens, int64_t k,
                 int64_t hidden, float* out, cudaStream_t stream) {
  const int64_t total = n_tokens * hidden;
  if (total == 0) return;
  launch_chained("moe_combine", moe_combine_kernel, static_cast<unsigned>((total + 255) / 256), 256, 0, stream,
                 slot_out, experts, weights, n_tokens, k, hidden, out);
}

}  // namespace lmlab::kernels::cuda
