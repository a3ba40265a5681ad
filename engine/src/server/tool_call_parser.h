// Tool calls out of generated text, as it streams. Text that is plainly content passes through at once; from
// the point where a tool-call marker may be starting, text is held until it is resolved: a marker (the call
// is parsed when complete) or not (the held text is content after all). A call that does not parse - bad
// JSON, no name, too deep - is given back as content, marker included: never lost, never an error.
// parse_tool_calls() is the same machine fed a whole text, so streamed and non-streamed answers agree.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "server/tool_call_format.h"

namespace lmlab::server {

struct ToolCall {
  std::string id;         // new_tool_call_id()
  std::string name;
  std::string arguments;  // a JSON text (OpenAI's function.arguments is a string)
};

// One resolved piece of the output: content text, or a tool call.
struct ToolStreamPiece {
  std::string content;
  std::optional<ToolCall> call;
};

class ToolCallStream {
 public:
  explicit ToolCallStream(ToolCallFormat format) : format_(format) {}
  std::vector<ToolStreamPiece> push(std::string_view text);
  std::vector<ToolStreamPiece> finish();  // the end of the output: resolves whatever is held
  int calls() const { return calls_; }

 private:
  enum class Mode { scan, hermes_block, rest };
  void scan(std::vector<ToolStreamPiece>& out);
  void emit_content(std::string_view text, std::vector<ToolStreamPiece>& out);
  void emit_call(ToolCall call, std::vector<ToolStreamPiece>& out);
  bool resolve_rest(std::vector<ToolStreamPiece>& out);  // llama3 / mistral: the whole tail is the calls

  ToolCallFormat format_;
  Mode mode_ = Mode::scan;
  std::string held_;           // text not resolved yet (after the marker, in the block and rest modes)
  std::string marker_;         // the marker that opened the current block / rest, given back on failure
  bool at_start_ = true;       // no content but whitespace so far (llama3 / mistral calls start the answer)
  bool trim_leading_ = false;  // after a call: the whitespace separating it from what follows is dropped
  int calls_ = 0;
};

struct ParsedToolCalls {
  std::string content;
  std::vector<ToolCall> calls;
};
ParsedToolCalls parse_tool_calls(ToolCallFormat format, std::string_view text);

// "call_" + 24 random characters from [A-Za-z0-9]; for mistral 9 of them (what its templates accept back).
std::string new_tool_call_id(ToolCallFormat format);

}  // namespace lmlab::server
