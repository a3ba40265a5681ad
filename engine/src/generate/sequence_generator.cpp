// SequenceGenerator: prefill, sample, emit per-token events with cumulative statistics, one step at a time
// (see generate.h). The next token is sampled when the next input is asked for, so a consumer that cancels
// after an event leaves no token sampled past it.
#include <algorithm>
#include <chrono>
#include <optional>

#include "lmlab/error.h"
#include "lmlab/generate.h"
#include "util/memory_stats.h"

namespace lmlab {

namespace {
int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
}  // namespace

struct SequenceGenerator::State {
  Session& session;
  SamplingParams params;
  std::vector<int32_t> prompt;
  std::vector<int32_t> stop;  // ids that end generation
  std::optional<StreamDecoder> detok;
  uint64_t rng = 0;
  GenerationResult res;

  int64_t prompt_done = 0;   // prompt tokens in the context
  int64_t pending = 0;       // tokens handed out by next_input and not accepted yet
  int32_t token = -1;        // the sampled token next_input hands out
  std::optional<TokenLogprobs> token_logprobs;
  std::vector<float> last;   // logits of the last accepted step, sampled lazily
  bool sample_due = false;
  bool over = false;
  int64_t max_tokens = 0;    // after the prefill: min(params.max_tokens, room left in the context)
  int64_t generated = 0;     // tokens that entered the context
  int64_t t_start = 0, t_decode = 0;

  State(Session& s, std::span<const int32_t> p, const SamplingParams& sp)
      : session(s), params(sp), prompt(p.begin(), p.end()), rng(sp.seed) {}

  // Samples the next token from `last`; ends the generation at the length limit or a stop id.
  void sample() {
    sample_due = false;
    if (generated >= max_tokens) {
      over = true;
      return;
    }
    token = sample_token(last, params, rng);
    if (generated == 0) res.stats.ttft_ns = now_ns() - t_start;
    if (std::find(stop.begin(), stop.end(), token) != stop.end()) {
      res.finish = FinishReason::stop;
      over = true;
      return;
    }
    res.tokens.push_back(token);
    if (params.logprobs >= 0) token_logprobs = lmlab::token_logprobs(last, token, params.logprobs);
  }
};

SequenceGenerator::SequenceGenerator(Session& session, std::span<const int32_t> prompt, const SamplingParams& params)
    : st_(std::make_unique<State>(session, prompt, params)) {
  State& s = *st_;
  if (prompt.empty()) throw Error(ErrorKind::invalid_input, "tokens", "nothing to append");
  const Model& model = session.model();
  s.stop = params.stop_ids;
  if (params.stop_at_eos) s.stop.insert(s.stop.end(), model.info().eos_ids.begin(), model.info().eos_ids.end());
  if (model.has_tokenizer()) s.detok.emplace(model.tokenizer(), true);
  s.t_start = now_ns();
  s.prompt_done = session.reuse_prefix(prompt);
  s.res.stats.prompt_cached_tokens = s.prompt_done;
  s.res.stats.prompt_tokens = static_cast<int64_t>(prompt.size()) - s.prompt_done;
}

SequenceGenerator::~SequenceGenerator() = default;

Session& SequenceGenerator::session() const { return st_->session; }

bool SequenceGenerator::prefilling() const {
  return !st_->over && st_->prompt_done < static_cast<int64_t>(st_->prompt.size());
}

std::span<const int32_t> SequenceGenerator::next_input(int64_t budget) {
  State& s = *st_;
  if (prefilling()) {
    s.pending = std::min(budget, static_cast<int64_t>(s.prompt.size()) - s.prompt_done);
    return std::span<const int32_t>(s.prompt).subspan(static_cast<size_t>(s.prompt_done), static_cast<size_t>(s.pending));
  }
  if (s.sample_due) s.sample();
  if (s.over) return {};
  s.pending = 1;
  return std::span<const int32_t>(&s.token, 1);
}

std::optional<TokenEvent> SequenceGenerator::accept(std::span<const float> logits) {
  State& s = *st_;
  s.last.assign(logits.begin(), logits.end());
  s.sample_due = true;
  if (prefilling()) {
    s.prompt_done += s.pending;
    s.pending = 0;
    if (prefilling()) {
      s.sample_due = false;  // a middle chunk's logits sample nothing
      return std::nullopt;
    }
    // Offer the prompt now, while sliding-window layers still hold its last window: a later request with the
    // same prompt can then resume right at its end.
    s.session.publish();
    s.res.stats.prompt_ns = now_ns() - s.t_start;
    s.max_tokens = std::min(s.params.max_tokens, s.session.model().info().ctx_size - s.session.n_past());
    s.t_decode = now_ns();
    return std::nullopt;
  }
  // The sampled token entered the context (so a follow-up turn can reuse it): one decode step.
  s.pending = 0;
  const int64_t index = s.generated++;
  s.res.stats.decode_tokens = s.generated;
  s.res.stats.decode_ns = now_ns() - s.t_decode;
  s.res.stats.kv_bytes = s.session.kv_bytes();
  s.res.stats.peak_bytes = process_peak_rss_bytes();
  TokenEvent ev{s.token, s.detok ? s.detok->push(s.token) : std::string(), index, s.res.stats,
                std::move(s.token_logprobs)};
  s.token_logprobs.reset();
  s.res.text += ev.text;
  return ev;
}

void SequenceGenerator::cancel() {
  st_->res.finish = FinishReason::cancelled;
  st_->over = true;
  st_->sample_due = false;
}

GenerationResult SequenceGenerator::finish() {
  State& s = *st_;
  if (s.detok) s.res.text += s.detok->flush();
  s.session.publish();
  s.res.stats.kv_bytes = s.session.kv_bytes();
  s.res.stats.peak_bytes = process_peak_rss_bytes();
  return std::move(s.res);
}

}  // namespace lmlab
