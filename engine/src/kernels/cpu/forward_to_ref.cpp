// TEMPORARY: the cpu:: entry points forward to ref:: until the optimised kernels land.
#include "kernels/kernels.h"

namespace lmlab::kernels::cpu {
void matmul(const MatmulArgs& a) { ref::matmul(a); }
void rmsnorm(const float* x, const float* w, float* y, int64_t n, int64_t d, float eps) { ref::rmsnorm(x, w, y, n, d, eps); }
void rope(const RopeArgs& a) { ref::rope(a); }
void attention(const AttentionArgs& a) { ref::attention(a); }
void softmax(float* x, int64_t n) { ref::softmax(x, n); }
void silu_mul(const float* g, const float* u, float* o, int64_t n) { ref::silu_mul(g, u, o, n); }
void gelu_tanh_mul(const float* g, const float* u, float* o, int64_t n) { ref::gelu_tanh_mul(g, u, o, n); }
void route_topk(const float* l, int64_t n, int64_t k, bool r, int32_t* e, float* w) { ref::route_topk(l, n, k, r, e, w); }
const char* isa_name() { return "ref"; }
}  // namespace lmlab::kernels::cpu
