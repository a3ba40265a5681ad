#include "peak_memory.h"

#include <malloc.h>

#include <fstream>

namespace lmlab::harness_detail {

bool reset_peak_rss() {
  // Hand freed heap pages back first (glibc keeps them otherwise): the mark then starts from what is live now,
  // not from an earlier sample's or config's KV cache.
  ::malloc_trim(0);
  std::ofstream clear_refs("/proc/self/clear_refs");
  if (!clear_refs) return false;
  clear_refs << "5";
  clear_refs.flush();
  return static_cast<bool>(clear_refs);
}

}  // namespace lmlab::harness_detail
