// The drive's own random-read ceiling, measured the way expert streaming reads: O_DIRECT, aligned reads of a
// fixed size at random offsets of a file, queue_depth of them in flight (io_uring or worker threads).
// `lmlab iobench --file F` prints it so every streaming run can state how close it came to the drive.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace lmlab {

struct IoBenchOptions {
  std::filesystem::path file;
  uint64_t read_bytes = 256 << 10;  // multiple of 4 KiB
  int queue_depth = 8;
  // 0: queue_depth reads always in flight (the drive's ceiling). n > 0: reads go in groups of n, each group
  // waiting for all of its reads before the next is issued, as decode reads one layer's missing experts.
  int burst = 0;
  double seconds = 5.0;
  bool use_uring = true;
  uint32_t seed = 1;
};

struct IoBenchResult {
  std::string mode;     // "direct", or "buffered" when the filesystem refuses O_DIRECT (then not the drive's)
  std::string mode_reason;
  std::string backend;  // "io_uring" | "threads"
  uint64_t file_bytes = 0, read_bytes = 0;
  int queue_depth = 0, burst = 0;
  uint64_t reads = 0, bytes = 0;
  double seconds = 0;             // wall time from the first submit to the last completion
  std::vector<double> latencies_s;  // every read's submit-to-completion time (the lab takes percentiles)
  uint64_t kernel_read_bytes = 0;  // /proc/self/io read_bytes increase over the run (the kernel's own count)

  std::string to_json() const;  // every field but the latencies
};

// Throws Error(invalid_input) for a bad size or a file smaller than one read, Error(io) when reads fail.
IoBenchResult run_iobench(const IoBenchOptions& options);

// The model directory's largest .safetensors file: where a drive probe reads what expert streaming reads.
// Throws Error(model_format) when there is none.
std::filesystem::path largest_safetensors_file(const std::filesystem::path& model_dir);

// Cold decode read path of expert streaming, without the compute: for `seconds`, token after token, every
// MoE layer asks the ExpertStreamer for top_k experts drawn uniformly (random routing, the cache's worst
// case) and waits for them. Its bandwidth against run_iobench's at the streamer's read size is the
// streaming efficiency (issue 6's goal: >= 80%).
struct ExpertStreamBenchOptions {
  std::filesystem::path model_dir;
  uint64_t expert_cache_bytes = 0;  // 0 = the engine's default (option table: expert_cache_mb)
  int queue_depth = 8;
  double seconds = 5.0;
  bool use_uring = true;
  std::string expert_cache_policy = "reuse";
  uint32_t seed = 1;
};

struct ExpertStreamBenchResult {
  std::string mode, backend, policy;
  uint64_t expert_read_bytes = 0;   // one expert's aligned read plan
  uint64_t cache_bytes = 0, experts_bytes = 0;
  uint64_t read_chunk_bytes = 0;    // the streamer's read size
  uint64_t tokens = 0, bytes = 0, reads = 0, hits = 0, misses = 0;
  double wall_seconds = 0, busy_seconds = 0;  // busy: time with a read in flight
  uint64_t kernel_read_bytes = 0;

  std::string to_json() const;
};

ExpertStreamBenchResult run_expert_stream_bench(const ExpertStreamBenchOptions& options);

}  // namespace lmlab
