// Process memory and I/O as the kernel counts them (/proc/self/status, /proc/self/io).
#pragma once

#include <cstdint>
#include <optional>

namespace lmlab {

uint64_t process_rss_bytes();
uint64_t process_peak_rss_bytes();
// Bytes this process caused to be fetched from storage (/proc/self/io read_bytes; page-cache hits do not
// count); nullopt when the kernel has no task I/O accounting.
std::optional<uint64_t> process_read_bytes();

}  // namespace lmlab
