// Generation: prefill a prompt, sample tokens, stream them as events with step statistics.
// This is the in-process half of the lab <-> engine contract: the lab stores these raw numbers and
// does all arithmetic (tok/s, percentiles) itself.
#pragma once

#include <cstdint>
#include <functional>
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

// on_token returns false to cancel. The session first keeps/adopts the longest cached prefix of the prompt
// (Session::reuse_prefix), runs the rest, and at the end offers its blocks to the prompt cache.
GenerationResult generate(Session& session, std::span<const int32_t> prompt, const SamplingParams& params,
                          const std::function<bool(const TokenEvent&)>& on_token = {});

// Samples one id from logits [vocab] (greedy when temperature == 0). rng_state is advanced.
int32_t sample_token(std::span<const float> logits, const SamplingParams& params, uint64_t& rng_state);

// The logprob of `id` under logits [vocab], and the n_top most likely ids with theirs.
TokenLogprobs token_logprobs(std::span<const float> logits, int32_t id, int n_top);

}  // namespace lmlab
