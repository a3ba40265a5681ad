// Generation: prefill a prompt, sample tokens, stream them as events with step statistics.
// This is the in-process half of the lab <-> engine contract: the lab stores these raw numbers and
// does all arithmetic (tok/s, percentiles) itself.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "lmlab/model.h"

namespace lmlab {

struct SamplingParams {
  float temperature = 0.0f;  // 0 = greedy (argmax, ties to the lowest id)
  int top_k = 0;             // 0 = off
  float top_p = 1.0f;
  float min_p = 0.0f;
  uint64_t seed = 0;
  int64_t max_tokens = 128;
  bool stop_at_eos = true;          // the model's eos ids end generation
  std::vector<int32_t> stop_ids;    // more ids that end generation
  int logprobs = -1;                // >= 0: each TokenEvent carries its logprob and this many top alternatives
};

struct TopLogprob {
  int32_t id;
  float logprob;
};

// log_softmax of the raw logits (before temperature and filtering), as OpenAI reports logprobs.
struct TokenLogprobs {
  float logprob = 0.0f;         // of the chosen token
  std::vector<TopLogprob> top;  // the most likely tokens, most likely first (ties to the lower id)
};

struct StepStats {
  int64_t prompt_tokens = 0;         // prompt tokens computed (after cache reuse)
  int64_t prompt_cached_tokens = 0;  // prompt tokens reused from the session or the prompt cache
  int64_t prompt_ns = 0;
  int64_t ttft_ns = 0;               // generate() call -> first token sampled (prefill + sampling), 0 if none
  int64_t decode_tokens = 0;
  int64_t decode_ns = 0;
  uint64_t kv_bytes = 0;
  uint64_t peak_bytes = 0;  // process peak resident memory
};

struct TokenEvent {
  int32_t id;
  std::string text;  // newly completed text (UTF-8 safe), may be empty
  int64_t index;     // 0-based index among generated tokens
  StepStats stats;   // cumulative so far
  std::optional<TokenLogprobs> logprobs;  // when SamplingParams::logprobs >= 0
};

enum class FinishReason { length, stop, cancelled };

struct GenerationResult {
  std::vector<int32_t> tokens;
  std::string text;
  FinishReason finish = FinishReason::length;
  StepStats stats;
};

// One sequence's generation advanced from outside, one forward step at a time: generate() drives one alone
// through Session::append, the server's batch scheduler drives many together through Model::append_batch.
// Both see the same tokens, events and statistics. Per step:
//   auto in = g.next_input(budget);   // empty: the generation is over, call finish()
//   ... append `in` to the session (alone or in a batch) ...
//   if (auto ev = g.accept(logits_of_the_last_token)) { hand *ev to the consumer; g.cancel() if it is gone }
class SequenceGenerator {
 public:
  // Keeps or adopts the longest cached prefix of the prompt (Session::reuse_prefix); copies the prompt.
  SequenceGenerator(Session& session, std::span<const int32_t> prompt, const SamplingParams& params);
  ~SequenceGenerator();
  SequenceGenerator(const SequenceGenerator&) = delete;
  SequenceGenerator& operator=(const SequenceGenerator&) = delete;

  Session& session() const;
  bool prefilling() const;  // the prompt is not all in the context yet
  // The tokens the next step appends: the next prompt chunk (at most `budget` tokens) or the token sampled
  // from the last step's logits. Empty once the generation is over (length, a stop id, or cancel()).
  std::span<const int32_t> next_input(int64_t budget);
  // The logits [vocab] of the last token the step appended. Returns the event of the generated token that
  // entered the context (none while prefilling).
  std::optional<TokenEvent> accept(std::span<const float> logits);
  void cancel();  // the consumer is gone: the generation ends as FinishReason::cancelled
  // Flushes the detokenizer and offers the session's blocks to the prompt cache; call once, at the end.
  GenerationResult finish();

 private:
  struct State;
  std::unique_ptr<State> st_;
};

// on_token returns false to cancel. The session first keeps/adopts the longest cached prefix of the prompt
// (Session::reuse_prefix), runs the rest, and at the end offers its blocks to the prompt cache.
GenerationResult generate(Session& session, std::span<const int32_t> prompt, const SamplingParams& params,
                          const std::function<bool(const TokenEvent&)>& on_token = {});

// Samples one id from logits [vocab] (greedy when temperature == 0). rng_state is advanced.
int32_t sample_token(std::span<const float> logits, const SamplingParams& params, uint64_t& rng_state);

// The logprob of `id` under logits [vocab], and the n_top most likely ids with theirs.
TokenLogprobs token_logprobs(std::span<const float> logits, int32_t id, int n_top);

}  // namespace lmlab
