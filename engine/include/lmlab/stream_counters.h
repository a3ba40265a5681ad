// Counters of SSD expert streaming, in process, under the metric names DESIGN.md fixes for GET /metrics
// (prefix lmlab_). The server exports render_prometheus() as is; generate prints them with its statistics.
//
// Meanings:
// - ssd_bytes_read_total: bytes the drive delivered to our reads (aligned extents, so >= the tensors' bytes);
//   with O_DIRECT this is what the kernel counts in /proc/self/io read_bytes.
// - ssd_reads_total: read requests issued (one per aligned extent or chunk of it).
// - ssd_read_seconds_total: wall-clock seconds during which at least one read was in flight, so
//   ssd_bytes_read_total / ssd_read_seconds_total is the bandwidth achieved while reading (per-read
//   latencies, which overlap, go to the histogram instead).
// - expert_cache_hits_total / misses_total: per distinct expert a layer's router asked for (a prefill chunk
//   asks once per expert); an expert already in the cache or already being read counts as a hit.
// - expert_cache_bytes: bytes the cache holds now (loaded or being loaded), never above its budget.
// - device_expert_cache_*: --device cuda only, the VRAM expert cache in front of the host one: hits and misses
//   per distinct expert a layer routes to (only its misses go to the host cache, whose counters above then count
//   them), and the VRAM it holds. Exported only when a device cache exists.
#pragma once

#include <array>
#include <cstdint>
#include <string>

namespace lmlab {

struct StreamCounters {
  // Upper bounds (seconds) of the read-latency histogram buckets; a last, implicit +Inf bucket follows.
  static constexpr std::array<double, 14> kLatencyBucketsSeconds = {
      50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3, 1.0};

  uint64_t ssd_bytes_read_total = 0;
  uint64_t ssd_reads_total = 0;
  double ssd_read_seconds_total = 0.0;
  uint64_t expert_cache_hits_total = 0;
  uint64_t expert_cache_misses_total = 0;
  uint64_t expert_cache_bytes = 0;
  // Beyond DESIGN.md's list (extra names are allowed):
  uint64_t expert_cache_budget_bytes = 0;
  uint64_t expert_cache_evictions_total = 0;
  uint64_t expert_prefetch_total = 0;       // experts read ahead on a prediction
  uint64_t expert_prefetch_used_total = 0;  // ... that a router then asked for before they were evicted
  uint64_t device_expert_cache_hits_total = 0, device_expert_cache_misses_total = 0;
  uint64_t device_expert_cache_bytes = 0;
  // Read latency: per-bucket counts (not cumulative), the last one for > 1 s; sum in seconds.
  std::array<uint64_t, kLatencyBucketsSeconds.size() + 1> read_latency_counts{};
  double read_latency_seconds_sum = 0.0;
  std::string read_mode;   // "direct" (O_DIRECT) or "buffered" (pread + POSIX_FADV_DONTNEED: O_DIRECT refused)
  std::string io_backend;  // "io_uring" or "threads"

  // Counters since `before` (gauges and labels are taken from *this).
  StreamCounters since(const StreamCounters& before) const;
};

// Prometheus text exposition lines ("# TYPE" + samples), names prefixed with lmlab_; the latency histogram
// is lmlab_ssd_read_latency_seconds with cumulative le buckets.
std::string render_prometheus(const StreamCounters& c);

}  // namespace lmlab
