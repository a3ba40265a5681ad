// Validation of tools, tool_choice and tool messages (see tool_request.h).
#include "server/tool_request.h"

#include <fmt/format.h>

#include <cctype>

#include "lmlab/error.h"
#include "server/json_bounded.h"

namespace lmlab::server {

namespace {

using nlohmann::ordered_json;

[[noreturn]] void bad(const std::string& param, const std::string& message) {
  throw Error(ErrorKind::invalid_input, param, message);
}

// OpenAI: a-z, A-Z, 0-9, underscores and dashes, at most 64 characters.
bool valid_function_name(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  for (const char c : name)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-')) return false;
  return true;
}

void check_function_name(const ordered_json& fn, const std::string& where) {
  auto name = fn.find("name");
  if (name == fn.end() || !name->is_string())
    bad(where + ".name", fmt::format("'{}.name' is required and must be a string", where));
  if (!valid_function_name(name->get<std::string>()))
    bad(where + ".name", fmt::format("'{}.name' must be 1 to 64 letters, digits, '_' or '-'", where));
}

void check_tool(const ordered_json& tool, size_t i) {
  const std::string where = fmt::format("tools[{}]", i);
  if (!tool.is_object()) bad(where, fmt::format("'{}' must be an object", where));
  auto type = tool.find("type");
  if (type == tool.end() || *type != "function")
    bad(where + ".type", fmt::format("'{}.type' must be \"function\"", where));
  auto fn = tool.find("function");
  if (fn == tool.end() || !fn->is_object())
    bad(where + ".function", fmt::format("'{}.function' must be an object", where));
  check_function_name(*fn, where + ".function");
  if (auto d = fn->find("description"); d != fn->end() && !d->is_null() && !d->is_string())
    bad(where + ".function.description", fmt::format("'{}.function.description' must be a string", where));
  if (auto p = fn->find("parameters"); p != fn->end() && !p->is_null() && !p->is_object())
    bad(where + ".function.parameters", fmt::format("'{}.function.parameters' must be a JSON Schema object", where));
}

bool tools_name(const ordered_json& tools, const std::string& name) {
  for (const auto& t : tools)
    if (t["function"]["name"] == name) return true;
  return false;
}

}  // namespace

ordered_json ToolRequest::template_variables() const {
  ordered_json vars = ordered_json::object();
  if (tools.is_null()) return vars;
  vars["tools"] = tools;
  if (!tool_choice.is_null()) vars["tool_choice"] = tool_choice;
  return vars;
}

ToolRequest parse_tool_request(const ordered_json& body) {
  ToolRequest rq;
  if (auto t = body.find("tools"); t != body.end() && !t->is_null()) {
    if (!t->is_array()) bad("tools", "'tools' must be a list of {\"type\": \"function\", \"function\": {...}}");
    if (t->size() > kMaxTools) bad("tools", fmt::format("'tools' has {} entries; at most {} are allowed", t->size(), kMaxTools));
    for (size_t i = 0; i < t->size(); ++i) check_tool((*t)[i], i);
    if (!t->empty()) rq.tools = *t;  // an empty list is no tools, as in transformers' `if tools`
  }
  if (auto p = body.find("parallel_tool_calls"); p != body.end() && !p->is_null() && !p->is_boolean())
    bad("parallel_tool_calls", "'parallel_tool_calls' must be a boolean");
  if (auto c = body.find("tool_choice"); c != body.end() && !c->is_null()) {
    if (rq.tools.is_null()) bad("tool_choice", "'tool_choice' is only allowed when 'tools' are given");
    if (c->is_string()) {
      const std::string s = c->get<std::string>();
      if (s != "none" && s != "auto" && s != "required")
        bad("tool_choice", "'tool_choice' must be \"none\", \"auto\", \"required\" or {\"type\": \"function\", ...}");
    } else if (c->is_object()) {
      auto type = c->find("type");
      auto fn = c->find("function");
      if (type == c->end() || *type != "function" || fn == c->end() || !fn->is_object())
        bad("tool_choice", "'tool_choice' as an object must be {\"type\": \"function\", \"function\": {\"name\": ...}}");
      check_function_name(*fn, "tool_choice.function");
      if (!tools_name(rq.tools, (*fn)["name"].get<std::string>()))
        bad("tool_choice.function.name", "'tool_choice.function.name' names no function of 'tools'");
    } else {
      bad("tool_choice", "'tool_choice' must be a string or an object");
    }
    rq.tool_choice = *c;
  }
  rq.parse_calls = !rq.tools.is_null() && rq.tool_choice != "none";
  return rq;
}

void prepare_tool_message(ordered_json& msg, size_t i) {
  const std::string role = msg["role"].get<std::string>();
  if (role == "tool") {
    auto id = msg.find("tool_call_id");
    if (id == msg.end() || !id->is_string())
      bad("messages", fmt::format("messages[{}].tool_call_id must be a string (role \"tool\")", i));
  }
  auto calls = msg.find("tool_calls");
  if (calls == msg.end() || calls->is_null()) return;
  if (role != "assistant") bad("messages", fmt::format("messages[{}].tool_calls: only assistant messages carry them", i));
  if (!calls->is_array()) bad("messages", fmt::format("messages[{}].tool_calls must be a list", i));
  for (size_t k = 0; k < calls->size(); ++k) {
    ordered_json& call = (*calls)[k];
    const std::string where = fmt::format("messages[{}].tool_calls[{}]", i, k);
    if (!call.is_object() || !call.contains("function") || !call["function"].is_object())
      bad("messages", where + " must be {\"id\", \"type\": \"function\", \"function\": {\"name\", \"arguments\"}}");
    if (auto id = call.find("id"); id != call.end() && !id->is_string()) bad("messages", where + ".id must be a string");
    ordered_json& fn = call["function"];
    if (!fn.contains("name") || !fn["name"].is_string()) bad("messages", where + ".function.name must be a string");
    auto args = fn.find("arguments");
    if (args == fn.end() || args->is_null()) continue;
    if (args->is_string()) {
      // Templates print arguments with tojson: a dict gives JSON, a string would give a quoted string.
      if (auto parsed = parse_json_bounded(args->get<std::string>()); parsed && parsed->is_object()) *args = *parsed;
    } else if (!args->is_object()) {
      bad("messages", where + ".function.arguments must be a JSON string");
    }
  }
}

}  // namespace lmlab::server
