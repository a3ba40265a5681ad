// Process memory as the kernel counts it (/proc/self/status): resident now and peak resident.
#pragma once

#include <cstdint>

namespace lmlab {

uint64_t process_rss_bytes();
uint64_t process_peak_rss_bytes();

}  // namespace lmlab
