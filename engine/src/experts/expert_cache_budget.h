// What an expert cache budget of 0 (--expert-cache-mb 0, the default) means, in one place: a quarter of the
// experts' aligned read bytes, and at least one expert so that the model runs. Model loading (through the
// ExpertStreamer), the memory plan and iobench's streaming run all resolve the budget here. A quarter, not "as
// much as fits": the same budget on every machine, so runs compare (option table: expert_cache_mb).
#pragma once

#include <cstdint>

#include "experts/expert_layout.h"

namespace lmlab {

// requested_bytes > 0 is returned as is (a budget below one expert is the cache's error to report).
uint64_t resolve_expert_cache_bytes(uint64_t requested_bytes, const ExpertLayout& layout);

}  // namespace lmlab
