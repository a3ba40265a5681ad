// Memory for a copy of a weight that decode streams once per token (the 4-bit panels, dense matrices moved into huge
// pages). Whole 2 MB pages of it are marked for transparent huge pages (Debian's default THP mode, "madvise", gives
// them only on request): through 4 KB pages a decode step pays TLB misses, and a fresh buffer's fill a page-fault
// trap per 4 KB (~8 us each on the dev VM). The buffer is 2 MB-aligned, its tail past the last whole huge page in
// 4 KB pages (no padding); one under a huge page is page-aligned and faulted in by one call (MADV_POPULATE_WRITE,
// Linux 5.14, advice only) instead of a trap a page.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <memory>

namespace lmlab {

struct FreeWeightBuffer {
  void operator()(uint8_t* p) const { std::free(p); }
};
using WeightBuffer = std::unique_ptr<uint8_t[], FreeWeightBuffer>;

inline constexpr uint64_t kHugePageBytes = uint64_t{2} << 20;

// Throws std::bad_alloc when the memory is refused.
WeightBuffer allocate_weight_buffer(uint64_t bytes);

}  // namespace lmlab
