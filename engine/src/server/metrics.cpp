// Prometheus text exposition of the server's and the engine's counters.
#include "server/metrics.h"

#include <fmt/format.h>

#include "util/memory_stats.h"

namespace lmlab::server {

std::string render_metrics(const ServerMetrics& m, const ModelCounters& c) {
  std::string s;
  auto metric = [&](const char* name, const char* type, const char* help, auto value) {
    s += fmt::format("# HELP lmlab_{} {}\n# TYPE lmlab_{} {}\nlmlab_{} {}\n", name, help, name, type, name, value);
  };
  metric("requests_total", "counter", "Generation requests received.", m.requests_total.load());
  metric("requests_active", "gauge", "Generation requests being answered now.", m.requests_active.load());
  metric("requests_errors_total", "counter", "Generation requests answered with an error.",
         m.requests_errors_total.load());
  metric("requests_cancelled_total", "counter", "Streams cancelled because the client went away.",
         m.requests_cancelled_total.load());
  metric("tokens_generated_total", "counter", "Tokens generated.", m.tokens_generated_total.load());
  metric("prompt_tokens_total", "counter", "Prompt tokens received.", m.prompt_tokens_total.load());
  metric("prompt_cache_hits_total", "counter", "Prompt cache lookups that reused a prefix.", c.prompt_cache_hits);
  metric("prompt_cache_hit_tokens_total", "counter", "Prompt tokens reused from the prompt cache.",
         c.prompt_cache_hit_tokens);
  metric("prompt_cache_bytes", "gauge", "Bytes held by the prompt cache.", c.prompt_cache_bytes);
  metric("memory_active_bytes", "gauge", "Resident memory of the process.", process_rss_bytes());
  metric("memory_peak_bytes", "gauge", "Peak resident memory of the process.", process_peak_rss_bytes());
  metric("memory_device_active_bytes", "gauge", "Device (GPU) memory held by the engine's allocator.",
         c.device_memory_bytes);
  metric("memory_device_peak_bytes", "gauge", "Peak device (GPU) memory held by the engine's allocator.",
         c.device_memory_peak_bytes);
  metric("kv_cache_bytes", "gauge", "KV cache bytes allocated (sessions and prompt cache).", c.kv_cache_bytes);
  metric("kv_cache_peak_bytes", "gauge", "Peak KV cache bytes allocated.", c.kv_cache_peak_bytes);
  // SSD reads, expert cache, prefetch and the read-latency histogram: the streamer's own exposition.
  return s + render_prometheus(c.stream);
}

}  // namespace lmlab::server
