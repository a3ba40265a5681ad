// CPU kernels. Each kernel has a plain reference in namespace ref (kernels/ref/<stem>.cpp, the ground
// truth for tests) and an optimised version in namespace cpu (kernels/cpu/<stem>.cpp: AVX-512 / AVX2 with
// runtime dispatch and a scalar fallback, multi-threaded through ThreadPool::global()). The model calls the
// unqualified lmlab::kernels:: entry points, which are the cpu versions.
// All activations are f32; weights may be f32, f16 or bf16 and are accumulated in f32.
#pragma once

#include <cstdint>

namespace lmlab::kernels {

enum class WeightType { f32, f16, bf16 };

// Y[n, rows] = X[n, cols] . W[rows, cols]^T, W row-major in its storage type.
struct MatmulArgs {
  WeightType type;
  const void* w;   // [rows, cols]
  int64_t rows, cols;
  const float* x;  // [n, cols], row stride cols
  float* y;        // [n, rows], row stride rows
  int64_t n;
  // bf16 / f16 W, prefill: the product may run on 14-bit integer x and W (cpu/matmul_half_i16.h, max |dlogit| ~3e-3 on
  // the golden fixtures) instead of the exact GEMM. Set by Linear for large matrices; not for the output head or MoE routers.
  bool int16_prefill = false;
};

// Rotary embedding, "rotate_half" (GPT-NeoX) layout as in HF llama/qwen/gemma: for i < rot_dim/2,
// (x[i], x[i + rot_dim/2]) rotates by angle pos * inv_freq[i]; cos and sin are scaled by attention_scaling.
struct RopeArgs {
  float* x;                 // [n_tokens, n_heads, head_dim], modified in place
  int64_t n_tokens, n_heads, head_dim, rot_dim;
  const int32_t* positions;  // [n_tokens]
  const float* inv_freq;     // [rot_dim / 2]
  float attention_scaling;   // 1 except for scaled RoPE variants that ask for it
  // [n_tokens][2 * (rot_dim/2)]: each token's cos[rot_dim/2] then sin[rot_dim/2] (scaled), from rope_table(); null:
  // computed per call. A forward's layers share one table (the sin / cos were ~4% of coder-dense's prefill).
  const float* cos_sin = nullptr;
};

// Causal multi-head attention with grouped KV heads over a contiguous history.
// Query token t sits at position q_pos0 + t and attends to kv positions p with p <= its position
// and, when window > 0, p > its position - window. softcap > 0 applies cap * tanh(s / cap) to scores.
struct AttentionArgs {
  const float* q;  // [n_q, n_heads, head_dim]
  const float* k;  // [n_kv, n_kv_heads, head_dim]
  const float* v;  // [n_kv, n_kv_heads, head_dim]
  float* out;      // [n_q, n_heads, head_dim]
  int64_t n_q, n_kv, n_heads, n_kv_heads, head_dim;
  int64_t q_pos0, kv_pos0;
  float scale;
  float softcap;   // 0 = none
  int64_t window;  // 0 = full attention
  // Paged history: when k_blocks is set, k and v are ignored and key j lives at
  // k_blocks[j / block_tokens] + (j % block_tokens) * n_kv_heads * head_dim (same for v). Blocks that hold
  // only positions no query can see (outside every window) may be null.
  const float* const* k_blocks = nullptr;
  const float* const* v_blocks = nullptr;
  int64_t block_tokens = 0;
};

// Row j of the (contiguous or paged) key/value history of an AttentionArgs.
inline const float* attention_k_row(const AttentionArgs& a, int64_t j) {
  const int64_t ld = a.n_kv_heads * a.head_dim;
  return a.k_blocks ? a.k_blocks[j / a.block_tokens] + (j % a.block_tokens) * ld : a.k + j * ld;
}
inline const float* attention_v_row(const AttentionArgs& a, int64_t j) {
  const int64_t ld = a.n_kv_heads * a.head_dim;
  return a.v_blocks ? a.v_blocks[j / a.block_tokens] + (j % a.block_tokens) * ld : a.v + j * ld;
}

namespace ref {
void matmul(const MatmulArgs& a);
void rmsnorm(const float* x, const float* w, float* y, int64_t n_rows, int64_t dim, float eps);  // x,y [n_rows, dim]
void rope(const RopeArgs& a);
void attention(const AttentionArgs& a);
void softmax(float* x, int64_t n);                                              // in place
void silu_mul(const float* gate, const float* up, float* out, int64_t n);       // out = silu(gate) * up
void gelu_tanh_mul(const float* gate, const float* up, float* out, int64_t n);  // out = gelu_tanh(gate) * up
// MoE routing for one token: probabilities = softmax(logits); the k largest (ties: lower index first; NaN
// probabilities, which any NaN or infinite logit makes of all of them, after every number, with NaN weights);
// when renormalize, their weights are divided by their sum. The experts are always k distinct ids in [0, n_experts).
void route_topk(const float* logits, int64_t n_experts, int64_t k, bool renormalize, int32_t* experts, float* weights);
}  // namespace ref

namespace cpu {
void matmul(const MatmulArgs& a);
void rmsnorm(const float* x, const float* w, float* y, int64_t n_rows, int64_t dim, float eps);
void rope(const RopeArgs& a);
// The cos / sin table of a.positions for RopeArgs::cos_sin ([a.n_tokens][2 * (rot_dim/2)]; a.x is not read), the
// values rope() computes (double-precision cos / sin of the f32 angle, then scaled).
void rope_table(const RopeArgs& a, float* cos_sin);
void attention(const AttentionArgs& a);
void softmax(float* x, int64_t n);
// The index of the largest of x[0, n), the first of equal ones; NaNs never win (all NaN, or n <= 0: 0).
int64_t argmax(const float* x, int64_t n);
// w[i] = e^((x[i] - m) scale) (0 where x[i] is NaN), and their sum: a temperature softmax's weights before the
// division (m the largest x, scale 1 / temperature).
double scaled_exp(const float* x, int64_t n, float m, float scale, float* w);
void silu_mul(const float* gate, const float* up, float* out, int64_t n);
void gelu_tanh_mul(const float* gate, const float* up, float* out, int64_t n);
void route_topk(const float* logits, int64_t n_experts, int64_t k, bool renormalize, int32_t* experts, float* weights);
// Which instruction set the dispatcher chose ("avx512", "avx2", "scalar"), for logs and benchmarks.
const char* isa_name();
}  // namespace cpu

using cpu::argmax;
using cpu::scaled_exp;
using cpu::attention;
using cpu::gelu_tanh_mul;
using cpu::matmul;
using cpu::rmsnorm;
using cpu::rope;
using cpu::rope_table;
using cpu::route_topk;
using cpu::silu_mul;
using cpu::softmax;

}  // namespace lmlab::kernels
