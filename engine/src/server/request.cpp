// Request parsing: JSON -> GenerationRequest, naming the parameter at fault in every error.
#include "server/request.h"

#include <fmt/format.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "lmlab/error.h"
#include "server/json_bounded.h"
#include "server/tool_request.h"

namespace lmlab::server {

namespace {

using nlohmann::ordered_json;

[[noreturn]] void bad(const std::string& param, const std::string& message) {
  throw Error(ErrorKind::invalid_input, param, message);
}

const ordered_json* field(const ordered_json& body, const char* name) {
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) return nullptr;
  return &*it;
}

double number_in(const ordered_json& body, const char* name, double def, double lo, double hi) {
  const ordered_json* v = field(body, name);
  if (!v) return def;
  if (!v->is_number()) bad(name, fmt::format("'{}' must be a number", name));
  const double x = v->get<double>();
  if (!std::isfinite(x) || x < lo || x > hi)
    bad(name, fmt::format("'{}' must be between {} and {}, got {}", name, lo, hi, x));
  return x;
}

int64_t integer_at_least(const ordered_json& body, const char* name, int64_t def, int64_t lo) {
  const ordered_json* v = field(body, name);
  if (!v) return def;
  if (!v->is_number_integer()) bad(name, fmt::format("'{}' must be an integer", name));
  const int64_t x = v->get<int64_t>();
  if (x < lo) bad(name, fmt::format("'{}' must be at least {}, got {}", name, lo, x));
  return x;
}

bool boolean(const ordered_json& body, const char* name, bool def) {
  const ordered_json* v = field(body, name);
  if (!v) return def;
  if (!v->is_boolean()) bad(name, fmt::format("'{}' must be a boolean", name));
  return v->get<bool>();
}

// encoded_text: set to whether the prompt was text (encoded up to the context) rather than token ids (whole).
std::vector<int32_t> prompt_tokens(const ordered_json& body, const Model& model, bool& encoded_text) {
  const ordered_json* p = field(body, "prompt");
  if (!p) bad("prompt", "'prompt' is required");
  // A list of one prompt is the same as the prompt.
  if (p->is_array() && p->size() == 1 && ((*p)[0].is_string() || (*p)[0].is_array())) p = &(*p)[0];
  encoded_text = p->is_string();
  if (p->is_string()) {
    const std::string text = p->get<std::string>();
    if (text.empty()) bad("prompt", "'prompt' is empty");
    return model.tokenizer().encode_at_most(text, true, model.info().ctx_size);
  }
  if (p->is_array()) {
    if (p->empty()) bad("prompt", "'prompt' is an empty list");
    const int64_t vocab = model.info().vocab;
    std::vector<int32_t> ids;
    ids.reserve(p->size());
    for (size_t i = 0; i < p->size(); ++i) {
      const auto& t = (*p)[i];
      if (t.is_string() || t.is_array()) bad("prompt", "only one prompt per request is supported");
      if (!t.is_number_integer()) bad("prompt", fmt::format("prompt[{}] is not a token id", i));
      const int64_t id = t.get<int64_t>();
      if (id < 0 || id >= vocab)
        bad("prompt", fmt::format("prompt[{}] = {} is outside the vocabulary [0, {})", i, id, vocab));
      ids.push_back(static_cast<int32_t>(id));
    }
    return ids;
  }
  bad("prompt", "'prompt' must be a string or a list of token ids");
}

// messages -> the chat template's text. Content may be a string or a list of {"type":"text","text":...} parts.
// `opening` (a forced tool call's start) follows the template's generation prompt.
std::vector<int32_t> chat_tokens(const ordered_json& body, const RequestContext& ctx, const ToolRequest& tools,
                                 const std::string& opening) {
  const ordered_json* m = field(body, "messages");
  if (!m) bad("messages", "'messages' is required");
  if (!m->is_array() || m->empty()) bad("messages", "'messages' must be a non-empty list");
  ordered_json messages = ordered_json::array();
  for (size_t i = 0; i < m->size(); ++i) {
    const auto& msg = (*m)[i];
    if (!msg.is_object()) bad("messages", fmt::format("messages[{}] is not an object", i));
    auto role = msg.find("role");
    if (role == msg.end() || !role->is_string()) bad("messages", fmt::format("messages[{}].role must be a string", i));
    ordered_json out = msg;
    auto content = msg.find("content");
    if (content != msg.end() && content->is_array()) {
      std::string text;
      for (const auto& part : *content) {
        const auto type = part.is_object() ? part.find("type") : part.end();
        if (!part.is_object() || type == part.end() || !type->is_string() || *type != "text" ||
            !part.contains("text") || !part["text"].is_string())
          bad("messages", fmt::format("messages[{}].content: only text parts are supported", i));
        text += part["text"].get<std::string>();
      }
      out["content"] = text;
    } else if (content != msg.end() && !content->is_string() && !content->is_null()) {
      bad("messages", fmt::format("messages[{}].content must be a string or a list of text parts", i));
    }
    prepare_tool_message(out, i);
    messages.push_back(std::move(out));
  }
  if (!ctx.chat_template)
    bad("messages", "the model has no usable chat template (" +
                        (ctx.chat_template_error.empty() ? std::string("none") : ctx.chat_template_error) +
                        "); use /v1/completions");
  std::string text;
  try {
    text = ctx.chat_template->apply(messages, true, tools.template_variables());
  } catch (const Error& e) {
    throw Error(e.kind(), "messages", "chat template: " + e.message());
  }
  text += opening;
  return ctx.model->tokenizer().encode_at_most(text, false, ctx.model->info().ctx_size);
}

// tool_choice "required" or {"type": "function", ...}: the answer starts as a call, written by the server (the
// model cannot answer in prose); the model's format must be known for that.
std::string forced_opening(const ToolRequest& tools, ToolCallFormat format) {
  const bool required = tools.tool_choice == "required", named = tools.tool_choice.is_object();
  if (!required && !named) return "";
  if (format == ToolCallFormat::none)
    throw Error(ErrorKind::unsupported, "tool_choice",
                "this model's chat template shows no tool-call format lmlab knows, so a call cannot be forced; use "
                "\"auto\"");
  if (!named) return forced_call_opener(format, nullptr);
  const std::string name = tools.tool_choice["function"]["name"].get<std::string>();
  return forced_call_opener(format, &name);
}

std::vector<std::string> stop_strings(const ordered_json& body) {
  const ordered_json* s = field(body, "stop");
  if (!s) return {};
  std::vector<std::string> out;
  if (s->is_string()) {
    out.push_back(s->get<std::string>());
  } else if (s->is_array()) {
    for (const auto& x : *s) {
      if (!x.is_string()) bad("stop", "'stop' must be a string or a list of strings");
      out.push_back(x.get<std::string>());
    }
  } else {
    bad("stop", "'stop' must be a string or a list of strings");
  }
  for (const auto& x : out)
    if (x.empty()) bad("stop", "'stop' strings must not be empty");
  return out;
}

// -1 (no logprobs) or the number of alternatives per token. Chat: "logprobs": bool, "top_logprobs": 0..20;
// completions: "logprobs": 0..20 (OpenAI allows up to 5 there; vLLM more).
int logprobs_request(const ordered_json& body, Endpoint endpoint) {
  constexpr int64_t kMaxTop = 20;
  if (endpoint == Endpoint::completions) {
    const ordered_json* v = field(body, "logprobs");
    if (!v) return -1;
    if (!v->is_number_integer() || v->get<int64_t>() < 0 || v->get<int64_t>() > kMaxTop)
      bad("logprobs", fmt::format("'logprobs' must be an integer from 0 to {}", kMaxTop));
    return static_cast<int>(v->get<int64_t>());
  }
  const bool wanted = boolean(body, "logprobs", false);
  const ordered_json* top = field(body, "top_logprobs");
  if (!top) return wanted ? 0 : -1;
  if (!top->is_number_integer() || top->get<int64_t>() < 0 || top->get<int64_t>() > kMaxTop)
    bad("top_logprobs", fmt::format("'top_logprobs' must be an integer from 0 to {}", kMaxTop));
  if (!wanted) bad("top_logprobs", "'top_logprobs' needs 'logprobs': true");
  return static_cast<int>(top->get<int64_t>());
}

}  // namespace

GenerationRequest parse_generation_request(const std::string& text, Endpoint endpoint, const RequestContext& ctx) {
  // Copying and converting JSON recurse per level: refuse deep documents before building them.
  if (json_nesting_depth(text) > kMaxJsonDepth)
    throw Error(ErrorKind::invalid_input, "", fmt::format("the body nests deeper than {} levels", kMaxJsonDepth));
  ordered_json body;
  try {
    body = ordered_json::parse(text);
  } catch (const nlohmann::json::exception& e) {  // parse_error, and out_of_range for numbers like 1e999
    throw Error(ErrorKind::invalid_input, "", std::string("the body is not valid JSON: ") + e.what());
  }
  if (!body.is_object()) throw Error(ErrorKind::invalid_input, "", "the body must be a JSON object");

  GenerationRequest rq;
  rq.endpoint = endpoint;
  if (integer_at_least(body, "n", 1, 1) != 1) bad("n", "only n = 1 is supported");
  SamplingParams& sp = rq.sampling;
  const char* max_name =
      endpoint == Endpoint::chat && field(body, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
  // --max-tokens is the default and the cap: a request cannot ask for more.
  sp.max_tokens = std::min(integer_at_least(body, max_name, ctx.default_max_tokens, 1), ctx.default_max_tokens);
  sp.temperature = static_cast<float>(number_in(body, "temperature", 1.0, 0.0, 2.0));
  sp.top_p = static_cast<float>(number_in(body, "top_p", 1.0, 0.0, 1.0));
  if (sp.top_p <= 0.0f) bad("top_p", "'top_p' must be greater than 0");
  sp.min_p = static_cast<float>(number_in(body, "min_p", 0.0, 0.0, 1.0));
  sp.top_k = static_cast<int>(integer_at_least(body, "top_k", 0, 0));
  if (const ordered_json* seed = field(body, "seed")) {
    if (!seed->is_number_integer()) bad("seed", "'seed' must be an integer");
    sp.seed = seed->is_number_unsigned() ? seed->get<uint64_t>() : static_cast<uint64_t>(seed->get<int64_t>());
  }
  sp.stop_at_eos = !boolean(body, "ignore_eos", false);  // vLLM's extension: fixed-length decodes for benchmarks
  rq.stop = stop_strings(body);
  rq.stream = boolean(body, "stream", false);
  if (const ordered_json* so = field(body, "stream_options")) {
    if (!so->is_object()) bad("stream_options", "'stream_options' must be an object");
    rq.include_usage = boolean(*so, "include_usage", false);
  }

  sp.logprobs = logprobs_request(body, endpoint);
  // Text prompts are encoded only up to ctx_size + 1 tokens (encode_at_most); token-id lists arrive whole.
  bool encoded_text = true;  // chat: the template's text
  if (endpoint == Endpoint::chat) {
    const ToolRequest tools = parse_tool_request(body);
    if (tools.parse_calls) {
      rq.tool_format = ctx.tool_format;
      rq.answer_opening = forced_opening(tools, ctx.tool_format);
    }
    rq.prompt = chat_tokens(body, ctx, tools, rq.answer_opening);
  } else {
    rq.prompt = prompt_tokens(body, *ctx.model, encoded_text);
  }
  const char* prompt_param = endpoint == Endpoint::chat ? "messages" : "prompt";
  if (rq.prompt.empty()) bad(prompt_param, "the prompt encodes to no tokens");
  const int64_t ctx_size = ctx.model->info().ctx_size;
  const int64_t n = static_cast<int64_t>(rq.prompt.size());
  if (n > ctx_size && encoded_text)
    bad(prompt_param, fmt::format("the prompt has more than {} tokens, the context size", ctx_size));
  if (n >= ctx_size)
    bad(prompt_param, fmt::format("the prompt has {} tokens but the context size is {} (the prompt must leave room "
                                  "for at least one generated token)",
                                  n, ctx_size));
  sp.max_tokens = std::min(sp.max_tokens, ctx_size - n);
  return rq;
}

}  // namespace lmlab::server
