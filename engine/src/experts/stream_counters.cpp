// StreamCounters: differences and Prometheus rendering.
#include "lmlab/stream_counters.h"

#include <fmt/format.h>

namespace lmlab {

StreamCounters StreamCounters::since(const StreamCounters& b) const {
  StreamCounters d = *this;
  d.ssd_bytes_read_total -= b.ssd_bytes_read_total;
  d.ssd_reads_total -= b.ssd_reads_total;
  d.ssd_read_seconds_total -= b.ssd_read_seconds_total;
  d.expert_cache_hits_total -= b.expert_cache_hits_total;
  d.expert_cache_misses_total -= b.expert_cache_misses_total;
  d.expert_cache_evictions_total -= b.expert_cache_evictions_total;
  d.expert_prefetch_total -= b.expert_prefetch_total;
  d.expert_prefetch_used_total -= b.expert_prefetch_used_total;
  d.device_expert_cache_hits_total -= b.device_expert_cache_hits_total;
  d.device_expert_cache_misses_total -= b.device_expert_cache_misses_total;
  for (size_t i = 0; i < d.read_latency_counts.size(); ++i) d.read_latency_counts[i] -= b.read_latency_counts[i];
  d.read_latency_seconds_sum -= b.read_latency_seconds_sum;
  return d;
}

std::string render_prometheus(const StreamCounters& c) {
  std::string s;
  auto metric = [&](const char* name, const char* type, auto value) {
    s += fmt::format("# TYPE lmlab_{} {}\nlmlab_{} {}\n", name, type, name, value);
  };
  metric("ssd_bytes_read_total", "counter", c.ssd_bytes_read_total);
  metric("ssd_reads_total", "counter", c.ssd_reads_total);
  metric("ssd_read_seconds_total", "counter", c.ssd_read_seconds_total);
  metric("expert_cache_hits_total", "counter", c.expert_cache_hits_total);
  metric("expert_cache_misses_total", "counter", c.expert_cache_misses_total);
  metric("expert_cache_bytes", "gauge", c.expert_cache_bytes);
  metric("expert_cache_budget_bytes", "gauge", c.expert_cache_budget_bytes);
  metric("expert_cache_evictions_total", "counter", c.expert_cache_evictions_total);
  metric("expert_prefetch_total", "counter", c.expert_prefetch_total);
  metric("expert_prefetch_used_total", "counter", c.expert_prefetch_used_total);
  if (c.device_expert_cache_bytes > 0) {
    metric("device_expert_cache_hits_total", "counter", c.device_expert_cache_hits_total);
    metric("device_expert_cache_misses_total", "counter", c.device_expert_cache_misses_total);
    metric("device_expert_cache_bytes", "gauge", c.device_expert_cache_bytes);
  }
  s += "# TYPE lmlab_ssd_read_latency_seconds histogram\n";
  uint64_t cumulative = 0;
  for (size_t i = 0; i < c.read_latency_counts.size(); ++i) {
    cumulative += c.read_latency_counts[i];
    const std::string le =
        i < StreamCounters::kLatencyBucketsSeconds.size() ? fmt::format("{}", StreamCounters::kLatencyBucketsSeconds[i])
                                                          : std::string("+Inf");
    s += fmt::format("lmlab_ssd_read_latency_seconds_bucket{{le=\"{}\"}} {}\n", le, cumulative);
  }
  s += fmt::format("lmlab_ssd_read_latency_seconds_sum {}\n", c.read_latency_seconds_sum);
  s += fmt::format("lmlab_ssd_read_latency_seconds_count {}\n", cumulative);
  if (!c.read_mode.empty())
    s += fmt::format("# TYPE lmlab_ssd_read_mode gauge\nlmlab_ssd_read_mode{{mode=\"{}\",backend=\"{}\"}} 1\n",
                     c.read_mode, c.io_backend);
  return s;
}

}  // namespace lmlab
