// MoE routing on the GPU, so the decode step never waits for the host: a warp per token takes the softmax
// over its experts' logits and picks the k most probable by repeated selection in (probability descending,
// index ascending) order, the reference's tie rule. moe_combine sums each token's expert outputs in
// ascending expert order, as the CPU does, so both add in the same order.
#include <cmath>

#include "cuda/cuda_check.h"
#include "cuda/kernels/chained_launch.cuh"
#include "cuda/kernels/expert_order.cuh"
#include "cuda/kernels/kernels_cuda.h"
#include "cuda/kernels/reduce.cuh"

namespace lmlab::kernels::cuda {

namespace {

// A warp per token (a thread per token took 120 us per call on 128 experts: k serial passes of E expf each).
__global__ void route_topk_kernel(const float* logits, int64_t n_tokens, int64_t E, int64_t k, bool renormalize,
                                  int32_t* experts, float* weights) {
  chain_enter();
  const int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x / 32) + (threadIdx.x >> 5);
  if (t >= n_tokens) return;
  const int lane = threadIdx.x & 31;
  const float* x = logits + t * E;
  float mx = -INFINITY;
  for (int64_t e = lane; e < E; e += 32) mx = fmaxf(mx, x[e]);
  mx = warp_max(mx);
  float sum = 0.0f;
  for (int64_t e = lane; e < E; e += 32) sum += expf(x[e] - mx);
  sum = warp_sum(sum);
  // Round i takes the most probable expert after the previous pick in (probability descending, index
  // ascending) order: each lane its best candidate, then the warp's best of those.
  float prev_p = INFINITY, chosen_sum = 0.0f;
  int64_t prev_i = -1;
  for (int64_t i = 0; i < k; ++i) {
    float best_p = -1.0f;
    int64_t best = E;
    for (int64_t e = lane; e < E; e += 32) {
      const float p = expf(x[e] - mx) / sum;
      const bool after_prev = p < prev_p || (p == prev_p && e > prev_i);
      if (after_prev && p > best_p) best_p = p, best = e;
    }
    for (int o = 16; o > 0; o >>= 1) {
      const float op = __shfl_xor_sync(0xffffffffu, best_p, o);
      const int64_t oi = __shfl_xor_sync(0xffffffffu, best, o);
      if (op > best_p || (op == best_p && oi < best)) best_p = op, best = oi;
    }
    if (lane == 0) experts[t * k + i] = static_cast<int32_t>(best), weights[t * k + i] = best_p;
    chosen_sum += best_p;
    prev_p = best_p, prev_i = best;
  }
  if (renormalize && lane == 0)
    for (int64_t i = 0; i < k; ++i) weights[t * k + i] /= chosen_sum;
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

void route_topk(const float* logits, int64_t n_tokens, int64_t n_experts, int64_t k, bool renormalize,
                int32_t* experts, float* weights, cudaStream_t stream) {
  if (k > kMaxTopK || k > n_experts)
    throw Error(ErrorKind::unsupported, "cuda route_topk", "top-k must be at most 16 and at most the expert count");
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
