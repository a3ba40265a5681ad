// One streamed answer as server-sent events: generated text (and its tokens' logprobs) in, SSE chunks out.
// Chat answers of a request with tools pass through a ToolCallStream: content streams as content deltas, each
// tool call goes out as one delta.tool_calls entry once it is complete, and the finish chunk says "tool_calls".
// Logprobs ride on the next chunk that goes out after their tokens (held text delays them; leftovers go with
// the finish chunk). While text is held, an SSE comment (": keep-alive") goes out at most once per keep_alive
// interval: a client that hung up is noticed by the failed write and cancels the generation, as for content.
#pragma once

#include <chrono>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "server/responses.h"
#include "server/tool_call_parser.h"

namespace lmlab::server {

class AnswerStream {
 public:
  AnswerStream(const GenerationRequest& rq, ResponseIds ids, const Tokenizer& tok,
               std::chrono::milliseconds keep_alive = std::chrono::seconds(1));
  std::string start() const;  // the chat role chunk; nothing for completions
  // The chunks for newly final text; when it is all held back, "" or a keep-alive comment.
  std::string push(const std::string& text, std::span<const LoggedToken> tokens);
  // The held text resolved, the finish chunk and (include_usage) the usage chunk; not [DONE].
  std::string finish(const GenerationOutcome& out);

 private:
  std::string chunks(std::vector<ToolStreamPiece> pieces);
  nlohmann::ordered_json take_logprobs();

  const GenerationRequest& rq_;
  ResponseIds ids_;
  const Tokenizer& tok_;
  std::optional<ToolCallStream> tools_;
  std::vector<LoggedToken> pending_;  // logprobs not sent yet
  size_t tokens_seen_ = 0;            // logged tokens received through push()
  size_t calls_sent_ = 0;
  int64_t text_offset_ = 0;           // completions' text_offset of the next token
  std::chrono::milliseconds keep_alive_;
  std::chrono::steady_clock::time_point last_output_ = std::chrono::steady_clock::now();
};

inline constexpr const char* kSseKeepAlive = ": keep-alive\n\n";

}  // namespace lmlab::server
