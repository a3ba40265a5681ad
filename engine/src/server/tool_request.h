// The tool-calling half of a /v1/chat/completions body: `tools`, `tool_choice`, `parallel_tool_calls`, and the
// messages of a tool round trip (assistant messages carrying tool_calls, role "tool" answers). Validated with
// errors naming the field (e.g. "tools[1].function.name"), and shaped for the chat template as transformers'
// apply_chat_template gives them: tools as the list of dicts the client sent, tool_calls[].function.arguments
// as a dict when the JSON string parses to one (templates apply tojson to it).
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace lmlab::server {

inline constexpr size_t kMaxTools = 128;  // OpenAI's own limit

struct ToolRequest {
  nlohmann::ordered_json tools;        // null when the request has none
  nlohmann::ordered_json tool_choice;  // null, "none", "auto", "required" or {"type":"function","function":{...}}
  bool parse_calls = false;            // tools given and tool_choice is not "none": parse calls out of the answer
  // The template variables to add: {"tools": [...], "tool_choice": ...}, empty without tools.
  nlohmann::ordered_json template_variables() const;
};

// Throws Error(invalid_input, field, message).
ToolRequest parse_tool_request(const nlohmann::ordered_json& body);

// Checks and reshapes one message's tool fields in place (index i names it in errors): a "tool" message needs
// a string tool_call_id; an assistant message's tool_calls must be a list of
// {"id", "type": "function", "function": {"name", "arguments"}}.
void prepare_tool_message(nlohmann::ordered_json& message, size_t i);

}  // namespace lmlab::server
