// SequenceStep: one sequence's share of a batched forward step (continuous batching), for the Transformer and
// every Backend.
#pragma once

#include <cstdint>
#include <span>

#include "kv/kv_sequence.h"

namespace lmlab {

// Its tokens run at positions [pos0, pos0 + tokens.size()) over its cache, which holds positions [0, pos0).
struct SequenceStep {
  std::span<const int32_t> tokens;
  int64_t pos0 = 0;
  KvSequence* cache = nullptr;
};

}  // namespace lmlab
