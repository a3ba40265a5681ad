#include "http_client.h"

#include <fmt/format.h>
#include <httplib.h>

#include <chrono>

#include "lmlab/error.h"
#include "sse_parser.h"

namespace lmlab::harness_detail {

namespace {

constexpr size_t kMaxUrlBytes = 2048;
constexpr size_t kMaxErrorBodyBytes = 64 << 10;  // what an error response may hold before it is cut
constexpr size_t kMaxGetBytes = 8 << 20;         // /metrics, /props, /health

bool host_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
}

std::unique_ptr<httplib::Client> client_of(const HttpTarget& t, int timeout_s) {
  auto c = std::make_unique<httplib::Client>(t.host, t.port);
  c->set_connection_timeout(10, 0);
  c->set_read_timeout(timeout_s, 0);
  c->set_write_timeout(timeout_s, 0);
  return c;
}

// The message of an OpenAI error body, or the body itself (cut) when it is not one.
std::string error_message(const std::string& body) {
  const auto j = nlohmann::json::parse(body, nullptr, false);
  if (j.is_object() && j.contains("error")) {
    const auto& e = j["error"];
    if (e.is_object() && e.contains("message") && e["message"].is_string()) return e["message"].get<std::string>();
    if (e.is_string()) return e.get<std::string>();
  }
  return body.substr(0, 300);
}

// One event of an OpenAI completion stream: text, finish reason, usage, or an error.
void take_event(const std::string& data, int64_t at_ns, StreamedCompletion& out) {
  if (data == "[DONE]") return;
  const auto j = nlohmann::json::parse(data, nullptr, false);
  if (!j.is_object()) {
    out.error = "the stream sent an event that is not JSON: " + data.substr(0, 120);
    return;
  }
  if (j.contains("error")) {
    out.error = "error event: " + error_message(data);
    return;
  }
  if (const auto u = j.find("usage"); u != j.end() && u->is_object()) {
    if (u->contains("prompt_tokens") && (*u)["prompt_tokens"].is_number_integer())
      out.prompt_tokens = (*u)["prompt_tokens"].get<int64_t>();
    if (u->contains("completion_tokens") && (*u)["completion_tokens"].is_number_integer())
      out.completion_tokens = (*u)["completion_tokens"].get<int64_t>();
  }
  const auto ch = j.find("choices");
  if (ch == j.end() || !ch->is_array() || ch->empty() || !(*ch)[0].is_object()) return;
  const auto& c = (*ch)[0];
  std::string piece;
  if (c.contains("text") && c["text"].is_string()) piece = c["text"].get<std::string>();
  if (c.contains("delta") && c["delta"].is_object() && c["delta"].contains("content") && c["delta"]["content"].is_string())
    piece = c["delta"]["content"].get<std::string>();
  if (!piece.empty()) {
    out.text += piece;
    out.chunk_ns.push_back(at_ns - out.sent_at_ns);
  }
  if (c.contains("finish_reason") && c["finish_reason"].is_string()) out.finish_reason = c["finish_reason"].get<std::string>();
}

}  // namespace

int64_t steady_now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::string HttpTarget::url() const { return fmt::format("http://{}:{}", host, port); }

HttpTarget parse_http_url(const std::string& url, const std::string& flag) {
  auto bad = [&](const std::string& why) {
    return Error(ErrorKind::invalid_input, flag, fmt::format("'{}' {}", url.substr(0, 200), why));
  };
  if (url.size() > kMaxUrlBytes) throw bad(fmt::format("is longer than {} characters", kMaxUrlBytes));
  const std::string scheme = "http://";
  if (url.rfind(scheme, 0) != 0) throw bad("is not an http:// URL (https is not supported)");
  std::string_view rest(url);
  rest.remove_prefix(scheme.size());
  HttpTarget t;
  size_t i = 0;
  while (i < rest.size() && host_char(rest[i])) ++i;
  if (i == 0) throw bad("names no host");
  t.host = std::string(rest.substr(0, i));
  rest.remove_prefix(i);
  if (!rest.empty() && rest.front() == ':') {
    rest.remove_prefix(1);
    size_t d = 0;
    int64_t port = 0;
    while (d < rest.size() && rest[d] >= '0' && rest[d] <= '9' && d < 6) port = port * 10 + (rest[d++] - '0');
    if (d == 0 || port < 1 || port > 65535) throw bad("has no valid port (1-65535)");
    t.port = static_cast<int>(port);
    rest.remove_prefix(d);
  }
  if (rest == "" || rest == "/" || rest == "/v1" || rest == "/v1/") return t;
  throw bad("has a path other than /v1 (give the server's root, e.g. http://127.0.0.1:8080)");
}

StreamedCompletion stream_completion(const HttpTarget& target, nlohmann::json body, int timeout_s) {
  body["stream"] = true;
  body["stream_options"] = {{"include_usage", true}};
  StreamedCompletion out;
  SseParser sse;
  std::string raw_error;  // the body of a non-200 answer
  httplib::Request req;
  req.method = "POST";
  req.path = "/v1/completions";
  req.body = body.dump();
  req.set_header("Content-Type", "application/json");
  int status = 0;
  req.response_handler = [&](const httplib::Response& r) {
    status = r.status;
    return true;
  };
  req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
    const int64_t now = steady_now_ns();
    if (status != 200) {
      raw_error.append(data, std::min(n, kMaxErrorBodyBytes - std::min(kMaxErrorBodyBytes, raw_error.size())));
      return true;
    }
    try {
      for (const std::string& ev : sse.feed(std::string_view(data, n))) take_event(ev, now, out);
    } catch (const Error& e) {
      out.error = e.what();
      return false;
    }
    return !out.error.has_value();
  };
  auto client = client_of(target, timeout_s);
  out.sent_at_ns = steady_now_ns();
  const auto res = client->send(req);
  out.done_at_ns = steady_now_ns();
  out.status = res ? res->status : status;
  if (!res && !out.error) {
    out.status = 0;
    out.error = fmt::format("no response from {}: {}", target.url(), httplib::to_string(res.error()));
  } else if (out.status != 200 && !out.error) {
    out.error = fmt::format("HTTP {}: {}", out.status, error_message(raw_error));
  } else if (!out.error && sse.pending()) {
    out.error = "the stream ended inside an event";
  }
  return out;
}

std::optional<std::string> http_get(const HttpTarget& target, const std::string& path, int timeout_s) {
  auto client = client_of(target, timeout_s);
  std::string body;
  const auto res = client->Get(path, [&](const char* data, size_t n) {
    if (body.size() + n > kMaxGetBytes) return false;  // a page this large is not what the lab asked for
    body.append(data, n);
    return true;
  });
  if (!res || res->status != 200) return std::nullopt;
  return body;
}

}  // namespace lmlab::harness_detail
