// The lab's side of OpenAI-compatible HTTP (cpp-httplib): streamed completions timed chunk by chunk on the
// steady clock, and plain GETs (/metrics, /health, version endpoints). Nothing here knows which runtime is
// on the other end.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace lmlab::harness_detail {

struct HttpTarget {
  std::string host;
  int port = 80;
  std::string url() const;  // "http://host:port"
};

// "http://HOST[:PORT][/][v1[/]]": the server's root (a trailing /v1 is accepted and dropped). Throws
// Error(invalid_input, `flag`) naming what is wrong (not http, no host, a bad port, another path, too long).
HttpTarget parse_http_url(const std::string& url, const std::string& flag = "--url");

struct StreamedCompletion {
  int status = 0;                    // HTTP status; 0 when no response came (connection refused, reset, timeout)
  std::optional<std::string> error;  // transport error, non-200 body, an error event, or a malformed stream
  std::string text;
  std::string finish_reason;
  std::vector<int64_t> chunk_ns;  // arrival of each chunk that carried text, ns after the request was sent
  int64_t prompt_tokens = -1, completion_tokens = -1;  // from the usage chunk; -1 when the server sent none
  int64_t sent_at_ns = 0, done_at_ns = 0;              // steady clock: when the request left, when it ended
};

// POSTs `body` (stream forced on, usage requested) to /v1/completions and reads the SSE stream to its end.
// Never throws for what the server does: every failure lands in `error`.
StreamedCompletion stream_completion(const HttpTarget& target, nlohmann::json body, int timeout_s = 600);

// GET path; the body when the status is 200, nullopt otherwise (or when the server is unreachable).
std::optional<std::string> http_get(const HttpTarget& target, const std::string& path, int timeout_s = 10);

int64_t steady_now_ns();

}  // namespace lmlab::harness_detail
