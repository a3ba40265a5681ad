// Streaming figures of a run (TTFT, inter-token latency percentiles, decode rate) from raw chunk arrival times:
// the numbers `lmlab compare` puts side by side for runtimes measured in process and over HTTP alike.
#include <cmath>
#include <limits>

#include "lmlab/results.h"

namespace lmlab {

std::vector<StreamSummary> summarize_streams(const std::vector<Sample>& samples) {
  std::vector<StreamSummary> out;
  struct Pool {
    std::vector<double> ttft_ms, itl_ms, tok_s, tokens;
  };
  std::vector<Pool> pools;
  for (const Sample& s : samples) {
    size_t i = 0;
    while (i < out.size() && !(out[i].config == s.config && out[i].context == s.context_tokens)) ++i;
    if (i == out.size()) {
      out.push_back({s.config, s.context_tokens});
      pools.emplace_back();
    }
    if (s.error) {
      ++out[i].errors;
      continue;
    }
    ++out[i].n;
    Pool& p = pools[i];
    p.ttft_ms.push_back(s.ttft_ns / 1e6);
    // One definition for every runtime: chunks after the first over first -> last chunk (lmlab and llama.cpp
    // send one chunk per token); the engine's own decode_ns counts steps differently from an HTTP client.
    if (s.chunk_ns.size() >= 2 && s.chunk_ns.back() > s.chunk_ns.front())
      p.tok_s.push_back(static_cast<double>(s.chunk_ns.size() - 1) * 1e9 / static_cast<double>(s.chunk_ns.back() - s.chunk_ns.front()));
    else if (s.decode_ns > 0)
      p.tok_s.push_back(s.decode_tokens * 1e9 / static_cast<double>(s.decode_ns));
    p.tokens.push_back(static_cast<double>(s.decode_tokens));
    for (size_t k = 1; k < s.chunk_ns.size(); ++k) p.itl_ms.push_back((s.chunk_ns[k] - s.chunk_ns[k - 1]) / 1e6);
  }
  for (size_t i = 0; i < out.size(); ++i) {
    const Pool& p = pools[i];
    out[i].ttft_ms_median = quantile(p.ttft_ms, 0.5);
    out[i].itl_ms_p50 = quantile(p.itl_ms, 0.5);
    out[i].itl_ms_p99 = quantile(p.itl_ms, 0.99);
    out[i].decode_tok_s_median = quantile(p.tok_s, 0.5);
    const double tokens = quantile(p.tokens, 0.5);
    out[i].decode_tokens_median = std::isnan(tokens) ? 0 : std::llround(tokens);
  }
  return out;
}

}  // namespace lmlab
