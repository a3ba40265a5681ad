// OpenAI response bodies: whole completions and server-sent-event chunks for /v1/completions and
// /v1/chat/completions. A stream is: (chat) a role chunk, content chunks, a chunk with finish_reason, an optional
// usage chunk, then "data: [DONE]".
#pragma once

#include <cstdint>
#include <string>

#include "server/generation.h"
#include "server/request.h"

namespace lmlab::server {

struct ResponseIds {
  std::string id;       // "cmpl-N" / "chatcmpl-N"
  int64_t created = 0;  // Unix seconds
  std::string model;
};

ResponseIds new_response_ids(Endpoint endpoint, const std::string& model_id);

std::string completion_body(Endpoint endpoint, const ResponseIds& ids, const GenerationOutcome& out);

// One "data: {...}\n\n" event.
std::string sse_role_chunk(const ResponseIds& ids);  // chat only
std::string sse_text_chunk(Endpoint endpoint, const ResponseIds& ids, const std::string& text);
std::string sse_finish_chunk(Endpoint endpoint, const ResponseIds& ids, const char* finish_reason);
std::string sse_usage_chunk(Endpoint endpoint, const ResponseIds& ids, const GenerationOutcome& out);
std::string sse_error(const std::string& error_body);
inline constexpr const char* kSseDone = "data: [DONE]\n\n";

}  // namespace lmlab::server
