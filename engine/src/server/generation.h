// Running one request's generation for the server: a slot among --parallel, the generation itself on the
// batch scheduler's engine thread (batch_scheduler.h), stop strings cut out of the text (held back while they
// may still be starting), and the text handed to an emit callback, on the request's thread, as it becomes
// final. emit returning false (the client went away) cancels the generation at its next token.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <span>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "lmlab/generate.h"
#include "server/batch_scheduler.h"
#include "server/logprobs_json.h"
#include "server/metrics.h"
#include "server/request.h"

namespace lmlab::server {

// At most `n` generations at once (the batch's active sequences); the others wait in arrival order of the condition variable.
// cancel_all() (shutdown) wakes the waiters and tells running generations to stop at their next token.
class GenerationSlots {
 public:
  explicit GenerationSlots(int n) : free_(n) {}
  bool acquire();  // false (no slot taken) once cancel_all() was called
  void release();
  void cancel_all();
  bool cancelled() const { return cancelled_.load(); }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int free_;
  std::atomic<bool> cancelled_{false};
};

// Finds stop strings in streamed text. push() returns the text that can no longer become part of a stop string.
class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {}
  std::string push(std::string_view piece);
  std::string finish();  // the held-back tail (no stop string was found)
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  std::string pending_;
  bool stopped_ = false;
};

struct GenerationOutcome {
  std::string text;
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  std::vector<LoggedToken> logged;       // every generated token's logprobs, when the request asked for them
  const char* finish_reason = "length";  // "stop" | "length"
  bool cancelled = false;                // emit returned false
  bool shutdown = false;                 // the server is stopping: cut short or never started
  StepStats stats;
};

// emit(text, tokens): text that became final, and the logged tokens not handed to an earlier emit (their text
// may have been held back by a stop string; tokens left after the last emit are only in the outcome).
using EmitFn = std::function<bool(const std::string& text, std::span<const LoggedToken> tokens)>;
GenerationOutcome run_generation(BatchScheduler& scheduler, GenerationSlots& slots, ServerMetrics& metrics,
                                 const GenerationRequest& rq, const EmitFn& emit);

}  // namespace lmlab::server
