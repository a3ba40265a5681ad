// The drive's own random-read ceiling, measured the way expert streaming reads: O_DIRECT, aligned reads of a
// fixed size at random offsets of a file, queue_depth of them in flight (io_uring or worker threads).
// `lmlab iobench --file F` prints it so every streaming run can state how close it came to the drive.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

namespace lmlab {

struct IoBenchOptions {
  std::filesystem::path file;
  uint64_t read_bytes = 256 << 10;  // multiple of 4 KiB
  int queue_depth = 8;
  double seconds = 5.0;
  bool use_uring = true;
  uint32_t seed = 1;
};

struct IoBenchResult {
  std::string mode;     // "direct", or "buffered" when the filesystem refuses O_DIRECT (then not the drive's)
  std::string mode_reason;
  std::string backend;  // "io_uring" | "threads"
  uint64_t file_bytes = 0, read_bytes = 0;
  int queue_depth = 0;
  uint64_t reads = 0, bytes = 0;
  double seconds = 0;             // wall time from the first submit to the last completion
  double bytes_per_second = 0, iops = 0;
  double latency_p50_s = 0, latency_p99_s = 0, latency_max_s = 0;
  uint64_t kernel_read_bytes = 0;  // /proc/self/io read_bytes increase over the run (the kernel's own count)

  std::string to_json() const;
};

// Throws Error(invalid_input) for a bad size or a file smaller than one read, Error(io) when reads fail.
IoBenchResult run_iobench(const IoBenchOptions& options);

}  // namespace lmlab
