// Server-side counters and the Prometheus text of GET /metrics (names fixed by DESIGN.md, prefix lmlab_).
// The engine's own counters (KV, prompt cache, SSD experts) come from Model::counters() at scrape time.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "lmlab/model.h"

namespace lmlab::server {

struct ServerMetrics {
  std::atomic<uint64_t> requests_total{0};            // generation requests received (valid or not)
  std::atomic<int64_t> requests_active{0};            // generation requests being answered now
  std::atomic<uint64_t> requests_errors_total{0};     // answered with an error status
  std::atomic<uint64_t> requests_cancelled_total{0};  // streams whose client went away mid-generation
  std::atomic<uint64_t> tokens_generated_total{0};
  std::atomic<uint64_t> prompt_tokens_total{0};
};

// Counts a request as active for its lifetime.
class ActiveRequest {
 public:
  explicit ActiveRequest(ServerMetrics& m) : m_(m) { m_.requests_active.fetch_add(1); }
  ~ActiveRequest() { m_.requests_active.fetch_sub(1); }
  ActiveRequest(const ActiveRequest&) = delete;
  ActiveRequest& operator=(const ActiveRequest&) = delete;

 private:
  ServerMetrics& m_;
};

std::string render_metrics(const ServerMetrics& m, const ModelCounters& c);

}  // namespace lmlab::server
