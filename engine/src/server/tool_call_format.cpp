// Picking the tool-call format of a model (see tool_call_format.h).
#include "server/tool_call_format.h"

namespace lmlab::server {

ToolCallFormat tool_call_format_for(std::string_view source, std::string_view arch) {
  if (source.find("<tool_call>") != std::string_view::npos) return ToolCallFormat::hermes;
  if (source.find("[TOOL_CALLS]") != std::string_view::npos) return ToolCallFormat::mistral;
  if (source.find("<|python_tag|>") != std::string_view::npos || source.find("<|start_header_id|>") != std::string_view::npos)
    return ToolCallFormat::llama3;
  // Templates that mention none of the markers: the family's usual format.
  if (arch == "qwen3" || arch == "qwen3_moe" || arch == "qwen2") return ToolCallFormat::hermes;
  if (arch == "mistral" || arch == "mixtral") return ToolCallFormat::mistral;
  if (arch == "llama") return ToolCallFormat::llama3;
  return ToolCallFormat::none;
}

std::string_view tool_call_format_name(ToolCallFormat f) {
  switch (f) {
    case ToolCallFormat::hermes: return "hermes";
    case ToolCallFormat::llama3: return "llama3";
    case ToolCallFormat::mistral: return "mistral";
    case ToolCallFormat::none: break;
  }
  return "none";
}

std::string forced_call_opener(ToolCallFormat f, const std::string* function_name) {
  std::string open;
  switch (f) {
    case ToolCallFormat::hermes: open = "<tool_call>\n{\"name\": "; break;
    case ToolCallFormat::llama3: open = "{\"name\": "; break;
    case ToolCallFormat::mistral: open = "[TOOL_CALLS][{\"name\": "; break;
    case ToolCallFormat::none: return "";
  }
  if (!function_name) return open + "\"";
  const char* args = f == ToolCallFormat::llama3 ? "parameters" : "arguments";
  return open + nlohmann::json(*function_name).dump() + ", \"" + args + "\": ";
}

}  // namespace lmlab::server
