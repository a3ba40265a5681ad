#include "util/weight_buffer.h"

#include <sys/mman.h>

#include <new>

namespace lmlab {

WeightBuffer allocate_weight_buffer(uint64_t bytes) {
  const uint64_t rounded = (bytes + 4095) / 4096 * 4096;
  WeightBuffer b(static_cast<uint8_t*>(std::aligned_alloc(bytes >= kHugePageBytes ? kHugePageBytes : 4096, rounded)));
  if (!b) throw std::bad_alloc();
  if (bytes >= kHugePageBytes) madvise(b.get(), bytes / kHugePageBytes * kHugePageBytes, MADV_HUGEPAGE);
#ifdef MADV_POPULATE_WRITE
  else madvise(b.get(), rounded, MADV_POPULATE_WRITE);
#endif
  return b;
}

}  // namespace lmlab
