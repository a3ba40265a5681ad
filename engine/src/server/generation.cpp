// Server-side generation: slots, stop strings, streaming of final text (see generation.h).
#include "server/generation.h"

#include <algorithm>

namespace lmlab::server {

bool GenerationSlots::acquire() {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] { return free_ > 0 || cancelled_; });
  if (cancelled_) return false;
  --free_;
  return true;
}

void GenerationSlots::cancel_all() {
  {
    std::lock_guard lock(mu_);
    cancelled_ = true;
  }
  cv_.notify_all();
}

void GenerationSlots::release() {
  {
    std::lock_guard lock(mu_);
    ++free_;
  }
  cv_.notify_one();
}

std::string StopMatcher::push(std::string_view piece) {
  if (stopped_) return {};
  pending_.append(piece);
  size_t first = std::string::npos;
  for (const auto& s : stops_) first = std::min(first, pending_.find(s));
  if (first != std::string::npos) {
    std::string out = pending_.substr(0, first);
    pending_.clear();
    stopped_ = true;
    return out;
  }
  // Hold back the longest tail that is a proper prefix of some stop string.
  size_t hold = 0;
  for (const auto& s : stops_) {
    for (size_t k = std::min(s.size() - 1, pending_.size()); k > hold; --k) {
      if (pending_.compare(pending_.size() - k, k, s, 0, k) == 0) {
        hold = k;
        break;
      }
    }
  }
  std::string out = pending_.substr(0, pending_.size() - hold);
  pending_.erase(0, pending_.size() - hold);
  return out;
}

std::string StopMatcher::finish() {
  std::string out;
  out.swap(pending_);
  return out;
}

namespace {
struct SlotGuard {
  GenerationSlots& slots;
  bool held;
  explicit SlotGuard(GenerationSlots& s) : slots(s), held(slots.acquire()) {}
  ~SlotGuard() {
    if (held) slots.release();
  }
};
}  // namespace

GenerationOutcome run_generation(BatchScheduler& scheduler, GenerationSlots& slots, ServerMetrics& metrics,
                                 const GenerationRequest& rq, const EmitFn& emit) {
  GenerationOutcome out;
  out.prompt_tokens = static_cast<int64_t>(rq.prompt.size());
  metrics.prompt_tokens_total.fetch_add(rq.prompt.size());
  SlotGuard slot(slots);
  if (!slot.held) {
    out.shutdown = true;
    return out;
  }
  // Until the job completes, `out`, the stop matcher and the counters below belong to the engine thread
  // (on_token); this thread only takes the job's pieces.
  std::shared_ptr<BatchJob> job;
  StopMatcher stopper(rq.stop);
  size_t event_bytes = 0;  // text that went through events (generate appends its decoder's flush after them)
  size_t logged_sent = 0;   // out.logged[0, logged_sent) went out with earlier text
  auto deliver = [&](const std::string& text) {
    if (text.empty()) return true;
    out.text += text;
    std::vector<LoggedToken> fresh(out.logged.begin() + static_cast<std::ptrdiff_t>(logged_sent), out.logged.end());
    logged_sent = out.logged.size();
    job->post({text, std::move(fresh)});
    return !job->abandoned();
  };
  job = std::make_shared<BatchJob>(rq.prompt, rq.sampling, [&](const TokenEvent& ev) {
    metrics.tokens_generated_total.fetch_add(1);
    if (slots.cancelled()) {
      out.shutdown = true;
      return false;
    }
    if (job->abandoned()) return false;
    event_bytes += ev.text.size();
    if (ev.logprobs) out.logged.push_back({ev.id, *ev.logprobs});
    if (!deliver(stopper.push(ev.text))) return false;
    return !stopper.stopped();
  });
  // Hands the pieces to emit as they come; a failed emit (the client is gone) stops the job at its next token.
  auto drain = [&] {
    while (std::optional<GenerationPiece> piece = job->next())
      if (!job->abandoned() && emit && !emit(piece->text, piece->tokens)) job->abandon();
  };
  scheduler.submit(job);
  drain();
  if (job->error()) std::rethrow_exception(job->error());
  const GenerationResult& res = job->result();
  if (!job->abandoned() && !out.shutdown && !stopper.stopped()) {
    std::string tail = stopper.push(std::string_view(res.text).substr(std::min(event_bytes, res.text.size())));
    if (!stopper.stopped()) tail += stopper.finish();
    deliver(tail);
    drain();
  }
  out.cancelled = job->abandoned();
  out.completion_tokens = static_cast<int64_t>(res.tokens.size());
  out.finish_reason = (stopper.stopped() || res.finish == FinishReason::stop) ? "stop" : "length";
  out.stats = res.stats;
  if (out.cancelled) metrics.requests_cancelled_total.fetch_add(1);
  return out;
}

}  // namespace lmlab::server
