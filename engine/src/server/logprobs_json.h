// The `logprobs` of OpenAI answers from the generated tokens' log-probabilities:
//   chat:        {"content": [{"token", "logprob", "bytes", "top_logprobs": [{"token", "logprob", "bytes"}]}]}
//   completions: {"tokens", "token_logprobs", "top_logprobs": [{token: logprob}], "text_offset"}
// A token's text is its own decoding: a byte-level piece of a multi-byte character reads as U+FFFD.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <span>

#include "lmlab/generate.h"
#include "lmlab/tokenizer.h"

namespace lmlab::server {

struct LoggedToken {
  int32_t id;
  TokenLogprobs logprobs;
};

nlohmann::ordered_json chat_logprobs_json(const Tokenizer& tok, std::span<const LoggedToken> tokens);

// text_offset: in characters (code points) of the generated text, counted from `offset`, which is advanced
// past these tokens (a stream continues where its previous chunk ended).
nlohmann::ordered_json completion_logprobs_json(const Tokenizer& tok, std::span<const LoggedToken> tokens,
                                                int64_t& offset);

}  // namespace lmlab::server
