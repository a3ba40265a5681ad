// The lab's arithmetic over raw engine measurements (rates, latency percentiles, the decode estimate of a
// memory plan, decode-bench figures): the engine reports counts, bytes and nanoseconds, the lab derives.
#include <algorithm>
#include <numeric>

#include "lmlab/results.h"

namespace lmlab {

double per_second(double count, double seconds) { return seconds > 0 ? count / seconds : 0.0; }

int64_t decode_ssd_steps(const Sample& s) { return std::max<int64_t>(0, s.decode_tokens - 1); }

double decode_ssd_bytes_per_token(const Sample& s) {
  const int64_t steps = decode_ssd_steps(s);
  return steps > 0 ? static_cast<double>(s.decode_ssd_bytes_read) / static_cast<double>(steps) : 0.0;
}

LatencyFigures latency_figures(std::vector<double> latencies_s) {
  LatencyFigures f;
  if (latencies_s.empty()) return f;
  f.p50_s = quantile(latencies_s, 0.50);
  f.p99_s = quantile(latencies_s, 0.99);
  f.max_s = *std::max_element(latencies_s.begin(), latencies_s.end());
  return f;
}

// Time per token = memory-resident bytes / memory bandwidth + drive bytes / drive bandwidth; unknown (0) when
// a bandwidth it needs was not given. Drive-only ("ssd") is an upper bound: the resident part is not counted.
DecodeEstimate estimate_decode(uint64_t bytes_per_token, uint64_t ssd_bytes_per_token, double memory_bytes_per_second,
                               double ssd_bytes_per_second) {
  DecodeEstimate e;
  const bool needs_ssd = ssd_bytes_per_token > 0;
  if (needs_ssd && ssd_bytes_per_second <= 0) return e;
  const double mem_bytes = static_cast<double>(bytes_per_token) - static_cast<double>(ssd_bytes_per_token);
  double seconds = 0.0;
  if (memory_bytes_per_second > 0) seconds += mem_bytes / memory_bytes_per_second, e.basis = "memory";
  if (needs_ssd) {
    seconds += static_cast<double>(ssd_bytes_per_token) / ssd_bytes_per_second;
    e.basis = e.basis.empty() ? "ssd" : "memory+ssd";
  }
  if (seconds > 0) e.tok_s = 1.0 / seconds;
  else e.basis.clear();
  return e;
}

DecodeBenchFigures decode_bench_figures(int64_t prefill_tokens, int64_t prefill_ns, const std::vector<int64_t>& step_ns) {
  DecodeBenchFigures f;
  f.prefill_tok_s = per_second(static_cast<double>(prefill_tokens), prefill_ns * 1e-9);
  if (step_ns.empty()) return f;
  const int64_t total = std::accumulate(step_ns.begin(), step_ns.end(), int64_t{0});
  f.decode_tok_s = per_second(static_cast<double>(step_ns.size()), total * 1e-9);
  std::vector<double> ms(step_ns.size());
  std::transform(step_ns.begin(), step_ns.end(), ms.begin(), [](int64_t ns) { return ns * 1e-6; });
  f.step_ms_p50 = quantile(ms, 0.50);
  f.step_ms_p90 = quantile(ms, 0.90);
  return f;
}

}  // namespace lmlab
