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

GenerationOutcome run_generation(const Model& model, GenerationSlots& slots, ServerMetrics& metrics,
                                 const GenerationRequest& rq, const EmitFn& emit) {
  GenerationOutcome out;
  out.prompt_tokens = static_cast<int64_t>(rq.prompt.size());
  metrics.prompt_tokens_total.fetch_add(rq.prompt.size());
  SlotGuard slot(slots);
  if (!slot.held) {
    out.shutdown = true;
    return out;
  }
  auto session = model.new_session();
  StopMatcher stopper(rq.stop);
  size_t event_bytes = 0;  // text that went through events (generate appends its decoder's flush after them)
  size_t logged_sent = 0;   // out.logged[0, logged_sent) went out with earlier text
  auto deliver = [&](const std::string& text) {
    if (text.empty()) return true;
    out.text += text;
    const std::span<const LoggedToken> fresh = std::span<const LoggedToken>(out.logged).subspan(logged_sent);
    logged_sent = out.logged.size();
    if (emit && !emit(text, fresh)) {
      out.cancelled = true;
      return false;
    }
    return true;
  };
  GenerationResult res = generate(*session, rq.prompt, rq.sampling, [&](const TokenEvent& ev) {
    metrics.tokens_generated_total.fetch_add(1);
    if (slots.cancelled()) {
      out.shutdown = true;
      return false;
    }
    event_bytes += ev.text.size();
    if (ev.logprobs) out.logged.push_back({ev.id, *ev.logprobs});
    if (!deliver(stopper.push(ev.text))) return false;
    return !stopper.stopped();
  });
  if (!out.cancelled && !out.shutdown && !stopper.stopped()) {
    std::string tail = stopper.push(std::string_view(res.text).substr(std::min(event_bytes, res.text.size())));
    if (!stopper.stopped()) tail += stopper.finish();
    deliver(tail);
  }
  out.completion_tokens = static_cast<int64_t>(res.tokens.size());
  out.finish_reason = (stopper.stopped() || res.finish == FinishReason::stop) ? "stop" : "length";
  out.stats = res.stats;
  if (out.cancelled) metrics.requests_cancelled_total.fetch_add(1);
  return out;
}

}  // namespace lmlab::server
