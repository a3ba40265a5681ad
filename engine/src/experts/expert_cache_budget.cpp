#include "experts/expert_cache_budget.h"

#include <algorithm>

namespace lmlab {

uint64_t resolve_expert_cache_bytes(uint64_t requested_bytes, const ExpertLayout& layout) {
  if (requested_bytes > 0) return requested_bytes;
  return std::max(layout.total_read_bytes() / 4, layout.max_buffer_bytes());
}

}  // namespace lmlab
