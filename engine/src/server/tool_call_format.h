// Which way a model writes tool calls, picked from its chat template text and architecture:
//   hermes:  <tool_call>{"name": ..., "arguments": {...}}</tool_call>, possibly several (Qwen 2.5/3, Hermes)
//   llama3:  the whole answer is {"name": ..., "parameters": {...}}, maybe after <|python_tag|> (Llama 3.1+)
//   mistral: [TOOL_CALLS][{"name": ..., "arguments": {...}}, ...] (Mistral v3; [TOOL_CALLS]name[ARGS]{...} in v11)
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace lmlab::server {

enum class ToolCallFormat { none, hermes, llama3, mistral };

// The template's own markers decide first; a template without any falls back on the architecture.
ToolCallFormat tool_call_format_for(std::string_view chat_template_source, std::string_view arch);
std::string_view tool_call_format_name(ToolCallFormat f);

// The text that opens a tool call in format f, up to and including the opening quote of the function's name, or
// (function_name given) up to the start of its arguments object. The server writes it at the start of the
// assistant's turn when tool_choice is "required" or names a function, so the model can only continue the call.
std::string forced_call_opener(ToolCallFormat f, const std::string* function_name);

}  // namespace lmlab::server
