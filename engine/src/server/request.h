// Parsing and validation of /v1/completions and /v1/chat/completions bodies into a GenerationRequest.
// Every problem is an Error(invalid_input) whose `where` is the offending parameter (the error body's param).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "lmlab/chat_template.h"
#include "lmlab/generate.h"
#include "lmlab/model.h"
#include "server/tool_call_format.h"

namespace lmlab::server {

enum class Endpoint { completions, chat };

struct GenerationRequest {
  Endpoint endpoint = Endpoint::completions;
  std::vector<int32_t> prompt;    // token ids, never empty, shorter than the context
  SamplingParams sampling;        // max_tokens already capped by the room left in the context
  std::vector<std::string> stop;  // stop strings (not part of the returned text)
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage: a last chunk with usage
  // Chat with tools (and tool_choice not "none"): tool calls of this format are parsed out of the answer.
  ToolCallFormat tool_format = ToolCallFormat::none;
  // Text the server wrote at the start of the assistant's turn (tool_choice "required" or a named function: the
  // opening of a call, forced_call_opener): it ends the prompt, and the tool-call parser reads it before the
  // generated text.
  std::string answer_opening;
  // sampling.logprobs >= 0: the answer carries logprobs (chat: logprobs + top_logprobs; completions: logprobs).
};

struct RequestContext {
  const Model* model = nullptr;
  const ChatTemplate* chat_template = nullptr;  // null: the model has none (chat requests fail with 400)
  std::string chat_template_error;              // why it is null, quoted in that 400
  int64_t default_max_tokens = 256;  // also the cap of max_tokens
  ToolCallFormat tool_format = ToolCallFormat::none;  // how the model writes tool calls (tool_call_format_for)
};

// Throws Error(invalid_input, param, message) for malformed JSON, missing or invalid fields, a prompt that
// does not fit the context; Error(unsupported, param, ...) for valid OpenAI fields lmlab does not implement.
GenerationRequest parse_generation_request(const std::string& body, Endpoint endpoint, const RequestContext& ctx);

}  // namespace lmlab::server
