// Read-ahead guess of the experts the next MoE layer will want: its router applied to the hidden state we
// have now (the residual stream changes little from one layer to the next, so the next router's top-k on
// the current layer's normed input agrees with its real choice most of the time). Cheap: one [E, hidden]
// matmul per token.
#pragma once

#include <cstdint>
#include <vector>

#include "weights/linear.h"

namespace lmlab {

// next_router: [n_experts, hidden]; h: [n, hidden]. The distinct experts of every token's top_k.
std::vector<int32_t> predict_experts(const Linear& next_router, const float* h, int64_t n, int64_t top_k);

}  // namespace lmlab
