// Tool-call extraction from streamed text (see tool_call_parser.h). The hermes format is resolved block by
// block as each </tool_call> arrives; llama3 and mistral calls fill the rest of the answer, so they are
// resolved when it ends.
#include "server/tool_call_parser.h"

#include <random>

#include "server/json_bounded.h"

namespace lmlab::server {

namespace {

using nlohmann::ordered_json;

constexpr std::string_view kWhitespace = " \t\r\n";
constexpr std::string_view kHermesOpen = "<tool_call>";
constexpr std::string_view kHermesClose = "</tool_call>";
constexpr std::string_view kPythonTag = "<|python_tag|>";
constexpr std::string_view kMistralCalls = "[TOOL_CALLS]";
constexpr std::string_view kMistralArgs = "[ARGS]";

std::string_view trim(std::string_view s) {
  const size_t b = s.find_first_not_of(kWhitespace);
  if (b == std::string_view::npos) return {};
  return s.substr(b, s.find_last_not_of(kWhitespace) - b + 1);
}

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

// The length of the longest tail of `text` that is a proper prefix of `marker` (text that may yet become it).
size_t partial_marker_tail(std::string_view text, std::string_view marker) {
  for (size_t k = std::min(marker.size() - 1, text.size()); k > 0; --k)
    if (text.substr(text.size() - k) == marker.substr(0, k)) return k;
  return 0;
}

std::string_view marker_of(ToolCallFormat f) {
  switch (f) {
    case ToolCallFormat::hermes: return kHermesOpen;
    case ToolCallFormat::llama3: return kPythonTag;
    case ToolCallFormat::mistral: return kMistralCalls;
    case ToolCallFormat::none: break;
  }
  return {};
}

std::optional<std::string> arguments_text(const ordered_json& args) {
  if (args.is_null()) return "{}";
  if (args.is_object()) return args.dump(-1, ' ', false, ordered_json::error_handler_t::replace);
  if (args.is_string()) return args.get<std::string>();  // already a JSON text, as OpenAI sends it
  return std::nullopt;
}

// {"name": "...", "arguments" | "parameters": {...}} -> a call; anything else -> nullopt.
std::optional<ToolCall> call_from_object(const ordered_json& obj) {
  if (!obj.is_object()) return std::nullopt;
  auto name = obj.find("name");
  if (name == obj.end() || !name->is_string() || name->get<std::string>().empty()) return std::nullopt;
  auto args = obj.find("arguments");
  if (args == obj.end()) args = obj.find("parameters");
  const std::optional<std::string> arguments = arguments_text(args == obj.end() ? ordered_json() : *args);
  if (!arguments) return std::nullopt;
  return ToolCall{"", name->get<std::string>(), *arguments};  // the id is given when the call is emitted
}

std::optional<ToolCall> call_from_text(std::string_view text) {
  const auto j = parse_json_bounded(text);
  if (!j) return std::nullopt;
  return call_from_object(*j);
}

// `text` cut at each `sep` that is outside JSON strings and brackets.
std::vector<std::string_view> split_top_level(std::string_view text, char sep) {
  std::vector<std::string_view> parts;
  int depth = 0;
  bool in_string = false, escaped = false;
  size_t from = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      ++depth;
    } else if ((c == '}' || c == ']') && depth > 0) {
      --depth;
    } else if (c == sep && depth == 0) {
      parts.push_back(text.substr(from, i - from));
      from = i + 1;
    }
  }
  parts.push_back(text.substr(from));
  return parts;
}

// One JSON object, a JSON list of them, or objects separated by ';' (Llama 3.2 writes several that way).
std::optional<std::vector<ToolCall>> calls_from_json_text(std::string_view text) {
  std::vector<ToolCall> calls;
  if (const auto j = parse_json_bounded(text)) {
    if (j->is_array()) {
      if (j->empty()) return std::nullopt;
      for (const auto& item : *j) {
        auto call = call_from_object(item);
        if (!call) return std::nullopt;
        calls.push_back(std::move(*call));
      }
      return calls;
    }
    auto call = call_from_object(*j);
    if (!call) return std::nullopt;
    calls.push_back(std::move(*call));
    return calls;
  }
  const std::vector<std::string_view> parts = split_top_level(text, ';');
  if (parts.size() < 2) return std::nullopt;
  for (const std::string_view part : parts) {
    if (trim(part).empty()) continue;
    auto call = call_from_text(part);
    if (!call) return std::nullopt;
    calls.push_back(std::move(*call));
  }
  if (calls.empty()) return std::nullopt;
  return calls;
}

// Mistral v11: name[ARGS]{...}, repeated with [TOOL_CALLS] between calls.
std::optional<std::vector<ToolCall>> mistral_named_calls(std::string_view text) {
  std::vector<ToolCall> calls;
  for (size_t from = 0; from <= text.size();) {
    size_t end = text.find(kMistralCalls, from);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view part = text.substr(from, end - from);
    const size_t args_at = part.find(kMistralArgs);
    if (args_at == std::string_view::npos) return std::nullopt;
    const std::string_view name = trim(part.substr(0, args_at));
    const auto args = parse_json_bounded(part.substr(args_at + kMistralArgs.size()));
    if (name.empty() || !args || !args->is_object()) return std::nullopt;
    calls.push_back(ToolCall{"", std::string(name), *arguments_text(*args)});
    from = end + kMistralCalls.size();
  }
  return calls;
}

}  // namespace

std::string new_tool_call_id(ToolCallFormat format) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  thread_local std::mt19937_64 rng{std::random_device{}()};
  // Mistral's templates refuse (raise_exception) tool_call ids that are not 9 letters and digits.
  const bool mistral = format == ToolCallFormat::mistral;
  std::string id = mistral ? "" : "call_";
  for (int i = 0; i < (mistral ? 9 : 24); ++i) id += kAlphabet[rng() % (sizeof(kAlphabet) - 1)];
  return id;
}

void ToolCallStream::emit_content(std::string_view text, std::vector<ToolStreamPiece>& out) {
  if (trim_leading_) {
    const size_t b = text.find_first_not_of(kWhitespace);
    if (b == std::string_view::npos) return;
    text.remove_prefix(b);
    trim_leading_ = false;
  }
  if (text.empty()) return;
  if (text.find_first_not_of(kWhitespace) != std::string_view::npos) at_start_ = false;
  if (!out.empty() && !out.back().call) {
    out.back().content.append(text);
  } else {
    out.push_back({std::string(text), std::nullopt});
  }
}

void ToolCallStream::emit_call(ToolCall call, std::vector<ToolStreamPiece>& out) {
  call.id = new_tool_call_id(format_);
  ++calls_;
  at_start_ = false;
  trim_leading_ = true;
  out.push_back({"", std::move(call)});
}

void ToolCallStream::scan(std::vector<ToolStreamPiece>& out) {
  for (;;) {
    if (mode_ == Mode::rest) return;  // resolved at finish()
    if (mode_ == Mode::hermes_block) {
      const size_t end = held_.find(kHermesClose);
      if (end == std::string::npos) return;
      const std::string block = held_.substr(0, end);
      if (auto call = call_from_text(block)) {
        emit_call(std::move(*call), out);
      } else {
        emit_content(marker_ + block + std::string(kHermesClose), out);
      }
      held_.erase(0, end + kHermesClose.size());
      mode_ = Mode::scan;
      continue;
    }
    if (format_ == ToolCallFormat::none) {
      emit_content(held_, out);
      held_.clear();
      return;
    }
    // llama3 and mistral calls may open the answer without a marker (it may be a special token the
    // detokenizer skipped): a leading '{' (llama3) or '[' then '{' (mistral).
    if (at_start_ && format_ != ToolCallFormat::hermes) {
      const size_t first = held_.find_first_not_of(kWhitespace);
      if (first == std::string::npos) return;  // only whitespace yet
      const std::string_view t = std::string_view(held_).substr(first);
      const std::string_view marker = marker_of(format_);
      if (starts_with(t, marker) || (format_ == ToolCallFormat::llama3 && t[0] == '{')) {
        marker_.clear();
        mode_ = Mode::rest;
        return;
      }
      if (format_ == ToolCallFormat::mistral && t[0] == '[') {
        const size_t k = t.find_first_not_of(kWhitespace, 1);
        if (k != std::string_view::npos && t[k] == '{') {
          marker_.clear();
          mode_ = Mode::rest;
          return;
        }
        if (k == std::string_view::npos || starts_with(marker, t)) return;  // may still become one
      }
      if (t.size() < marker.size() && starts_with(marker, t)) return;
    }
    const std::string_view marker = marker_of(format_);
    const size_t pos = held_.find(marker);
    if (pos != std::string::npos) {
      emit_content(std::string_view(held_).substr(0, pos), out);
      held_.erase(0, pos + marker.size());
      marker_ = std::string(marker);
      mode_ = format_ == ToolCallFormat::hermes ? Mode::hermes_block : Mode::rest;
      continue;
    }
    const size_t keep = partial_marker_tail(held_, marker);
    emit_content(std::string_view(held_).substr(0, held_.size() - keep), out);
    held_.erase(0, held_.size() - keep);
    return;
  }
}

bool ToolCallStream::resolve_rest(std::vector<ToolStreamPiece>& out) {
  std::string_view t = trim(held_);
  std::optional<std::vector<ToolCall>> calls;
  if (format_ == ToolCallFormat::llama3) {
    if (starts_with(t, kPythonTag)) t = trim(t.substr(kPythonTag.size()));
    calls = calls_from_json_text(t);
  } else if (format_ == ToolCallFormat::mistral) {
    if (starts_with(t, kMistralCalls)) t = trim(t.substr(kMistralCalls.size()));
    calls = (!t.empty() && t[0] == '[') ? calls_from_json_text(t) : mistral_named_calls(t);
  }
  if (!calls) return false;
  for (auto& c : *calls) emit_call(std::move(c), out);
  return true;
}

std::vector<ToolStreamPiece> ToolCallStream::push(std::string_view text) {
  std::vector<ToolStreamPiece> out;
  held_.append(text);
  scan(out);
  return out;
}

std::vector<ToolStreamPiece> ToolCallStream::finish() {
  std::vector<ToolStreamPiece> out;
  if (mode_ == Mode::hermes_block) {
    // An unclosed block (the answer was cut, or the model ends without </tool_call>): a call if it parses.
    if (auto call = call_from_text(held_)) {
      emit_call(std::move(*call), out);
    } else {
      emit_content(marker_ + held_, out);
    }
  } else if (mode_ == Mode::rest) {
    if (!resolve_rest(out)) emit_content(marker_ + held_, out);
  } else {
    emit_content(held_, out);
  }
  held_.clear();
  mode_ = Mode::scan;
  return out;
}

ParsedToolCalls parse_tool_calls(ToolCallFormat format, std::string_view text) {
  ToolCallStream stream(format);
  std::vector<ToolStreamPiece> pieces = stream.push(text);
  for (auto& p : stream.finish()) pieces.push_back(std::move(p));
  ParsedToolCalls parsed;
  for (auto& p : pieces) {
    if (p.call) {
      parsed.calls.push_back(std::move(*p.call));
    } else {
      parsed.content += p.content;
    }
  }
  return parsed;
}

}  // namespace lmlab::server
