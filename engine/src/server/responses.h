// OpenAI response bodies: whole completions and server-sent-event chunks for /v1/completions and
// /v1/chat/completions. A stream is: (chat) a role chunk, content (or tool-call) chunks, a chunk with finish_reason, an optional
// usage chunk, then "data: [DONE]".
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "server/generation.h"
#include "server/request.h"
#include "server/tool_call_parser.h"

namespace lmlab::server {

struct ResponseIds {
  std::string id;       // "cmpl-N" / "chatcmpl-N"
  int64_t created = 0;  // Unix seconds
  std::string model;
};

ResponseIds new_response_ids(Endpoint endpoint, const std::string& model_id);

// Chat answers of a request with tools carry the parsed `tool_calls` (content null when there is none besides
// them) and finish_reason "tool_calls"; logprobs when the request asked for them.
std::string completion_body(const GenerationRequest& rq, const ResponseIds& ids, const GenerationOutcome& out,
                            const Tokenizer& tok);

// OpenAI's streamed tool call: {"index", "id", "type": "function", "function": {"name", "arguments"}}.
nlohmann::ordered_json tool_call_json(const ToolCall& call, size_t index);

// One "data: {...}\n\n" event.
std::string sse_role_chunk(const ResponseIds& ids);  // chat only
// Any chunk: `payload` is the chat delta or the completion text; logprobs null leaves the chat choice without
// the key (completions always have it).
std::string sse_chunk(Endpoint endpoint, const ResponseIds& ids, nlohmann::ordered_json payload,
                      nlohmann::ordered_json logprobs, const char* finish_reason);
std::string sse_usage_chunk(Endpoint endpoint, const ResponseIds& ids, const GenerationOutcome& out);
std::string sse_error(const std::string& error_body);
inline constexpr const char* kSseDone = "data: [DONE]\n\n";

}  // namespace lmlab::server
