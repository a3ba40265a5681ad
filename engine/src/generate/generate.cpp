// generate(): prefill, then sample/decode one token at a time, emitting events with cumulative stats.
#include "lmlab/generate.h"

#include <algorithm>
#include <chrono>
#include <optional>
#include <thread>

#include "util/memory_stats.h"

namespace lmlab {

namespace {
int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
}  // namespace

GenerationResult generate(Session& session, std::span<const int32_t> prompt, const SamplingParams& params,
                          const std::function<bool(const TokenEvent&)>& on_token) {
  const Model& model = session.model();
  GenerationResult res;
  std::vector<int32_t> stop = params.stop_ids;
  if (params.stop_at_eos) stop.insert(stop.end(), model.info().eos_ids.begin(), model.info().eos_ids.end());
  std::optional<StreamDecoder> detok;
  if (model.has_tokenizer()) detok.emplace(model.tokenizer(), true);
  uint64_t rng = params.seed;

  const int64_t t_start = now_ns();
  int64_t t0 = t_start;
  const int64_t reused = session.reuse_prefix(prompt);
  std::span<const float> logits = session.append(prompt.subspan(static_cast<size_t>(reused)));
  std::vector<float> last(logits.begin(), logits.end());
  res.stats.prompt_tokens = static_cast<int64_t>(prompt.size()) - reused;
  res.stats.prompt_cached_tokens = reused;
  // Offer the prompt now, while sliding-window layers still hold its last window: a later request with the
  // same prompt can then resume right at its end.
  session.publish();
  res.stats.prompt_ns = now_ns() - t0;

  const int64_t room = model.info().ctx_size - session.n_past();
  const int64_t max_tokens = std::min(params.max_tokens, room);
  const int64_t delay_us = model.options().debug_token_delay_us;
  t0 = now_ns();
  for (int64_t i = 0; i < max_tokens; ++i) {
    const int32_t id = sample_token(last, params, rng);
    if (i == 0) res.stats.ttft_ns = now_ns() - t_start;
    if (std::find(stop.begin(), stop.end(), id) != stop.end()) {
      res.finish = FinishReason::stop;
      break;
    }
    res.tokens.push_back(id);
    std::optional<TokenLogprobs> logprobs;
    if (params.logprobs >= 0) logprobs = token_logprobs(last, id, params.logprobs);  // `last` is overwritten below
    // Test-only (--debug-token-delay-us): a slow decode, so that server tests can catch requests in flight.
    if (const int64_t us = model.options().debug_token_delay_us; us > 0)
      std::this_thread::sleep_for(std::chrono::microseconds(us));
    // Every generated token enters the context (so a follow-up turn can reuse it) and counts as one step.
    logits = session.append(std::span<const int32_t>(&id, 1));
    last.assign(logits.begin(), logits.end());
    // Test-only injected slowdown (ModelOptions::debug_token_delay_us): the gate's tests must see it in decode_ns.
    if (delay_us > 0) std::this_thread::sleep_for(std::chrono::microseconds(delay_us));
    res.stats.decode_tokens = i + 1;
    res.stats.decode_ns = now_ns() - t0;
    res.stats.kv_bytes = session.kv_bytes();
    res.stats.peak_bytes = process_peak_rss_bytes();
    TokenEvent ev{id, detok ? detok->push(id) : std::string(), i, res.stats, std::move(logprobs)};
    res.text += ev.text;
    if (on_token && !on_token(ev)) {
      res.finish = FinishReason::cancelled;
      break;
    }
  }
  if (detok) res.text += detok->flush();
  session.publish();
  res.stats.kv_bytes = session.kv_bytes();
  res.stats.peak_bytes = process_peak_rss_bytes();
  return res;
}

}  // namespace lmlab
