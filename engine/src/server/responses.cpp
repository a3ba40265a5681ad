// OpenAI completion bodies and SSE chunks (see responses.h).
#include "server/responses.h"

#include <atomic>
#include <chrono>
#include <nlohmann/json.hpp>

namespace lmlab::server {

namespace {

using nlohmann::ordered_json;

std::string dump(const ordered_json& j) { return j.dump(-1, ' ', false, ordered_json::error_handler_t::replace); }

bool is_chat(Endpoint e) { return e == Endpoint::chat; }

ordered_json envelope(Endpoint endpoint, const ResponseIds& ids, bool chunk) {
  return ordered_json{
      {"id", ids.id},
      {"object", is_chat(endpoint) ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion"},
      {"created", ids.created},
      {"model", ids.model}};
}

ordered_json usage(const GenerationOutcome& out) {
  return {{"prompt_tokens", out.prompt_tokens},
          {"completion_tokens", out.completion_tokens},
          {"total_tokens", out.prompt_tokens + out.completion_tokens}};
}

std::string event(const ordered_json& j) { return "data: " + dump(j) + "\n\n"; }

ordered_json chunk_choice(Endpoint endpoint, ordered_json delta_or_text, const char* finish_reason,
                          ordered_json logprobs = nullptr) {
  ordered_json c = {{"index", 0}};
  if (is_chat(endpoint)) {
    c["delta"] = std::move(delta_or_text);
    if (!logprobs.is_null()) c["logprobs"] = std::move(logprobs);
  } else {
    c["text"] = std::move(delta_or_text);
    c["logprobs"] = std::move(logprobs);
  }
  c["finish_reason"] = finish_reason ? ordered_json(finish_reason) : ordered_json();
  return c;
}

}  // namespace

ResponseIds new_response_ids(Endpoint endpoint, const std::string& model_id) {
  static std::atomic<uint64_t> next{1};
  ResponseIds ids;
  ids.id = (is_chat(endpoint) ? "chatcmpl-" : "cmpl-") + std::to_string(next.fetch_add(1));
  ids.created =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  ids.model = model_id;
  return ids;
}

ordered_json tool_call_json(const ToolCall& call, size_t index) {
  return {{"index", index},
          {"id", call.id},
          {"type", "function"},
          {"function", {{"name", call.name}, {"arguments", call.arguments}}}};
}

std::string completion_body(const GenerationRequest& rq, const ResponseIds& ids, const GenerationOutcome& out,
                            const Tokenizer& tok) {
  const Endpoint endpoint = rq.endpoint;
  const bool want_logprobs = rq.sampling.logprobs >= 0;
  ordered_json j = envelope(endpoint, ids, false);
  ordered_json choice = {{"index", 0}};
  const char* finish_reason = out.finish_reason;
  if (is_chat(endpoint)) {
    const ParsedToolCalls parsed = parse_tool_calls(rq.tool_format, rq.answer_opening + out.text);
    ordered_json message = {{"role", "assistant"}};
    message["content"] = parsed.calls.empty() || !parsed.content.empty() ? ordered_json(parsed.content) : ordered_json();
    if (!parsed.calls.empty()) {
      ordered_json calls = ordered_json::array();
      for (const ToolCall& c : parsed.calls) {
        ordered_json call = tool_call_json(c, calls.size());
        call.erase("index");  // only streamed calls are numbered
        calls.push_back(std::move(call));
      }
      message["tool_calls"] = std::move(calls);
      finish_reason = "tool_calls";
    }
    choice["message"] = std::move(message);
    choice["logprobs"] = want_logprobs ? chat_logprobs_json(tok, out.logged) : ordered_json();
  } else {
    choice["text"] = out.text;
    int64_t offset = 0;
    choice["logprobs"] = want_logprobs ? completion_logprobs_json(tok, out.logged, offset) : ordered_json();
  }
  choice["finish_reason"] = finish_reason;
  j["choices"] = ordered_json::array({choice});
  j["usage"] = usage(out);
  return dump(j);
}

std::string sse_role_chunk(const ResponseIds& ids) {
  ordered_json j = envelope(Endpoint::chat, ids, true);
  j["choices"] = ordered_json::array({chunk_choice(Endpoint::chat, {{"role", "assistant"}, {"content", ""}}, nullptr)});
  return event(j);
}

std::string sse_chunk(Endpoint endpoint, const ResponseIds& ids, ordered_json payload, ordered_json logprobs,
                      const char* finish_reason) {
  ordered_json j = envelope(endpoint, ids, true);
  j["choices"] = ordered_json::array({chunk_choice(endpoint, std::move(payload), finish_reason, std::move(logprobs))});
  return event(j);
}

std::string sse_usage_chunk(Endpoint endpoint, const ResponseIds& ids, const GenerationOutcome& out) {
  ordered_json j = envelope(endpoint, ids, true);
  j["choices"] = ordered_json::array();
  j["usage"] = usage(out);
  return event(j);
}

std::string sse_error(const std::string& error_body) { return "data: " + error_body + "\n\n"; }

}  // namespace lmlab::server
