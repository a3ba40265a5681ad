// Tool calls parsed out of generated text per model family (hermes, llama3, mistral), whole and streamed:
// the calls' names and arguments, content around them, malformed calls given back as content, and what a
// stream holds back while a marker may be starting.
#include "server/tool_call_parser.h"

#include <gtest/gtest.h>

#include <cctype>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace lmlab::server {
namespace {

using nlohmann::json;

// Content and calls of `pieces` concatenated (adjacent content pieces merged).
ParsedToolCalls collect(const std::vector<ToolStreamPiece>& pieces) {
  ParsedToolCalls p;
  for (const auto& x : pieces) {
    if (x.call) p.calls.push_back(*x.call);
    else p.content += x.content;
  }
  return p;
}

ParsedToolCalls stream_in_pieces(ToolCallFormat f, const std::string& text, size_t piece) {
  ToolCallStream s(f);
  std::vector<ToolStreamPiece> all;
  for (size_t i = 0; i < text.size(); i += piece)
    for (auto& x : s.push(text.substr(i, piece))) all.push_back(x);
  for (auto& x : s.finish()) all.push_back(x);
  return collect(all);
}

void expect_call(const ToolCall& c, const std::string& name, const json& args) {
  EXPECT_EQ(c.name, name);
  EXPECT_EQ(json::parse(c.arguments), args) << c.arguments;
  if (c.id.size() == 9) return;  // a mistral id (MistralIdsAreNineAlphanumerics)
  EXPECT_EQ(c.id.rfind("call_", 0), 0u);
  EXPECT_EQ(c.id.size(), 29u);
}

TEST(ToolCallParser, MistralIdsAreNineAlphanumerics) {
  // Mistral's chat templates raise_exception when a tool_call id sent back is not 9 letters and digits.
  const ParsedToolCalls p = parse_tool_calls(ToolCallFormat::mistral, R"([TOOL_CALLS][{"name": "f", "arguments": {}}])");
  ASSERT_EQ(p.calls.size(), 1u);
  EXPECT_EQ(p.calls[0].id.size(), 9u);
  for (char c : p.calls[0].id) EXPECT_TRUE(std::isalnum(static_cast<unsigned char>(c))) << p.calls[0].id;
  EXPECT_EQ(parse_tool_calls(ToolCallFormat::hermes, "<tool_call>{\"name\": \"f\"}</tool_call>").calls.at(0).id.size(), 29u);
}

TEST(ToolCallFormat, PickedFromTemplateMarkersThenArchitecture) {
  EXPECT_EQ(tool_call_format_for("... <tool_call>\\n{...} ...", "llama"), ToolCallFormat::hermes);
  EXPECT_EQ(tool_call_format_for("{{ '[TOOL_CALLS]' }}", "qwen3"), ToolCallFormat::mistral);
  EXPECT_EQ(tool_call_format_for("<|start_header_id|>ipython", "qwen3"), ToolCallFormat::llama3);
  EXPECT_EQ(tool_call_format_for("<|im_start|>", "qwen3"), ToolCallFormat::hermes);
  EXPECT_EQ(tool_call_format_for("<|im_start|>", "llama"), ToolCallFormat::llama3);
  EXPECT_EQ(tool_call_format_for("", "mixtral"), ToolCallFormat::mistral);
  EXPECT_EQ(tool_call_format_for("", "gemma3"), ToolCallFormat::none);
}

TEST(ToolCallParser, HermesSeveralCallsWithContentBefore) {
  const std::string text =
      "Let me check both.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Tokyo\"}}\n</tool_call>\n"
      "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {\"tz\": \"JST\", \"n\": [1, 2]}}\n</tool_call>";
  const ParsedToolCalls p = parse_tool_calls(ToolCallFormat::hermes, text);
  EXPECT_EQ(p.content, "Let me check both.\n");
  ASSERT_EQ(p.calls.size(), 2u);
  expect_call(p.calls[0], "get_weather", {{"city", "Tokyo"}});
  expect_call(p.calls[1], "get_time", {{"tz", "JST"}, {"n", {1, 2}}});
  EXPECT_NE(p.calls[0].id, p.calls[1].id);
  EXPECT_EQ(p.calls[0].arguments, R"({"city":"Tokyo"})");  // compact, as OpenAI sends it
}

TEST(ToolCallParser, HermesMalformedCallsStayContent) {
  for (const std::string bad : {"<tool_call>{\"name\": \"f\", \"arguments\": {</tool_call>",
                                "<tool_call>{\"arguments\": {}}</tool_call>",  // no name
                                "<tool_call>{\"name\": 3}</tool_call>", "<tool_call>[1, 2]</tool_call>",
                                "<tool_call>{\"name\": \"f\", \"arguments\": 7}</tool_call>",
                                "<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": 1}",  // cut, and bad JSON
                                "<tool_call>"}) {
    const ParsedToolCalls p = parse_tool_calls(ToolCallFormat::hermes, "x " + bad);
    EXPECT_TRUE(p.calls.empty()) << bad;
    EXPECT_EQ(p.content, "x " + bad);
  }
}

TEST(ToolCallParser, HermesUnclosedButCompleteCallIsACall) {
  const ParsedToolCalls p = parse_tool_calls(ToolCallFormat::hermes, "<tool_call>\n{\"name\": \"f\"}\n");
  ASSERT_EQ(p.calls.size(), 1u);
  expect_call(p.calls[0], "f", json::object());
  EXPECT_EQ(p.content, "");
}

TEST(ToolCallParser, HermesTooDeepArgumentsStayContent) {
  const std::string deep = std::string(200, '[') + std::string(200, ']');
  const std::string text = "<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": " + deep + "}}</tool_call>";
  const ParsedToolCalls p = parse_tool_calls(ToolCallFormat::hermes, text);
  EXPECT_TRUE(p.calls.empty());
  EXPECT_EQ(p.content, text);
}

TEST(ToolCallParser, PlainTextIsContentForEveryFormat) {
  for (auto f : {ToolCallFormat::none, ToolCallFormat::hermes, ToolCallFormat::llama3, ToolCallFormat::mistral}) {
    const ParsedToolCalls p = parse_tool_calls(f, "  The answer is [1, 2] and {x}; <tool or [TOOL");
    EXPECT_TRUE(p.calls.empty());
    EXPECT_EQ(p.content, "  The answer is [1, 2] and {x}; <tool or [TOOL");
  }
}

TEST(ToolCallParser, Llama3JsonWithOrWithoutPythonTag) {
  ParsedToolCalls p = parse_tool_calls(ToolCallFormat::llama3,
                                       "{\"name\": \"get_weather\", \"parameters\": {\"location\": \"Paris\"}}");
  ASSERT_EQ(p.calls.size(), 1u);
  expect_call(p.calls[0], "get_weather", {{"location", "Paris"}});
  EXPECT_EQ(p.content, "");
  p = parse_tool_calls(ToolCallFormat::llama3, "\n<|python_tag|>{\"name\": \"f\", \"arguments\": {\"a\": 1}}");
  ASSERT_EQ(p.calls.size(), 1u);
  expect_call(p.calls[0], "f", {{"a", 1}});
  // Llama 3.2 separates several calls with ';'.
  p = parse_tool_calls(ToolCallFormat::llama3, R"({"name": "a", "parameters": {}}; {"name": "b", "parameters": {"x": "y;z"}})");
  ASSERT_EQ(p.calls.size(), 2u);
  expect_call(p.calls[0], "a", json::object());
  expect_call(p.calls[1], "b", {{"x", "y;z"}});
}

TEST(ToolCallParser, Llama3JsonThatIsNotACallIsContent) {
  for (const std::string text : {"{\"answer\": 42}", "{\"name\": \"f\", \"parameters\": {", "<|python_tag|>print(1)",
                                 "{\"name\": \"f\"}; nonsense"}) {
    const ParsedToolCalls p = parse_tool_calls(ToolCallFormat::llama3, text);
    EXPECT_TRUE(p.calls.empty()) << text;
    EXPECT_EQ(p.content, text);
  }
}

// What the server writes to force a call (tool_choice "required" or a named function) plus what a model would
// continue with parses, in every format, as that call.
TEST(ToolCallFormat, ForcedOpenersContinueIntoACall) {
  const std::string name = "get_weather";
  for (ToolCallFormat f : {ToolCallFormat::hermes, ToolCallFormat::llama3, ToolCallFormat::mistral}) {
    const std::string args = f == ToolCallFormat::llama3 ? "parameters" : "arguments";
    const std::string close = f == ToolCallFormat::hermes ? "}\n</tool_call>" : f == ToolCallFormat::mistral ? "}]" : "}";
    ParsedToolCalls p = parse_tool_calls(f, forced_call_opener(f, &name) + "{\"city\": \"Paris\"}" + close);
    ASSERT_EQ(p.calls.size(), 1u) << tool_call_format_name(f);
    expect_call(p.calls[0], name, {{"city", "Paris"}});
    p = parse_tool_calls(f, forced_call_opener(f, nullptr) + "get_time\", \"" + args + "\": {}" + close);
    ASSERT_EQ(p.calls.size(), 1u) << tool_call_format_name(f);
    expect_call(p.calls[0], "get_time", json::object());
  }
  EXPECT_EQ(forced_call_opener(ToolCallFormat::none, &name), "");
}

TEST(ToolCallParser, MistralListAfterMarkerOrBareAndNamedArgs) {
  ParsedToolCalls p = parse_tool_calls(
      ToolCallFormat::mistral,
      R"([TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Rome"}}, {"name": "f", "arguments": "{\"k\": 1}"}])");
  ASSERT_EQ(p.calls.size(), 2u);
  expect_call(p.calls[0], "get_weather", {{"city", "Rome"}});
  expect_call(p.calls[1], "f", {{"k", 1}});
  // The marker is a special token the detokenizer may have skipped: a bare list opening the answer.
  p = parse_tool_calls(ToolCallFormat::mistral, R"( [ {"name": "g", "arguments": {}}])");
  ASSERT_EQ(p.calls.size(), 1u);
  expect_call(p.calls[0], "g", json::object());
  // v11 templates: [TOOL_CALLS]name[ARGS]{...}
  p = parse_tool_calls(ToolCallFormat::mistral, R"(Sure.[TOOL_CALLS]get_weather[ARGS]{"city": "Oslo"}[TOOL_CALLS]h[ARGS]{})");
  EXPECT_EQ(p.content, "Sure.");
  ASSERT_EQ(p.calls.size(), 2u);
  expect_call(p.calls[0], "get_weather", {{"city", "Oslo"}});
  expect_call(p.calls[1], "h", json::object());
  p = parse_tool_calls(ToolCallFormat::mistral, "[TOOL_CALLS][{\"name\": \"f\", \"arguments\": {");
  EXPECT_TRUE(p.calls.empty());
  EXPECT_EQ(p.content, "[TOOL_CALLS][{\"name\": \"f\", \"arguments\": {");
}

TEST(ToolCallStream, ContentBeforeAMarkerStreamsAndAPossibleMarkerIsHeld) {
  ToolCallStream s(ToolCallFormat::hermes);
  ParsedToolCalls got = collect(s.push("Sure, let me look. <tool"));
  EXPECT_EQ(got.content, "Sure, let me look. ");  // "<tool" may start a marker: held
  got = collect(s.push("s> are"));
  EXPECT_EQ(got.content, "<tools> are");  // it did not: released
  got = collect(s.push(" next.\n<tool_call>\n{\"name\": \"f\", "));
  EXPECT_EQ(got.content, " next.\n");
  EXPECT_TRUE(got.calls.empty());
  got = collect(s.push("\"arguments\": {}}\n</tool_"));
  EXPECT_TRUE(got.calls.empty() && got.content.empty());
  got = collect(s.push("call>\n"));
  ASSERT_EQ(got.calls.size(), 1u);  // a call goes out as soon as it closes
  EXPECT_EQ(got.calls[0].name, "f");
  EXPECT_EQ(s.calls(), 1);
  got = collect(s.finish());
  EXPECT_TRUE(got.calls.empty() && got.content.empty());  // the newline after a call is not content
}

TEST(ToolCallStream, Llama3HoldsAnAnswerOpeningWithABraceUntilTheEnd) {
  ToolCallStream s(ToolCallFormat::llama3);
  EXPECT_TRUE(s.push("  ").empty());
  EXPECT_TRUE(s.push("{\"name\": \"f\",").empty());
  EXPECT_TRUE(s.push(" \"parameters\": {}}").empty());
  const ParsedToolCalls got = collect(s.finish());
  ASSERT_EQ(got.calls.size(), 1u);
  EXPECT_EQ(got.content, "");
  ToolCallStream t(ToolCallFormat::llama3);
  EXPECT_EQ(collect(t.push(" Hello")).content, " Hello");  // plainly content: streams at once
}

TEST(ToolCallStream, EverySplitGivesTheWholeParse) {
  const std::pair<ToolCallFormat, std::string> cases[] = {
      {ToolCallFormat::hermes, "Hi <tool_call>{\"name\": \"a\", \"arguments\": {\"q\": \"<tool_call>\"}}</tool_call> and "
                               "<tool_call>{bad}</tool_call><tool_call>{\"name\": \"b\"}"},
      {ToolCallFormat::llama3, "<|python_tag|>{\"name\": \"a\", \"parameters\": {\"x\": [1, {\"y\": null}]}}"},
      {ToolCallFormat::mistral, "[TOOL_CALLS][{\"name\": \"a\", \"arguments\": {}}]"},
      {ToolCallFormat::mistral, "text [TOOL_CALLS]a[ARGS]{\"z\": 1}"},
  };
  for (const auto& [f, text] : cases) {
    const ParsedToolCalls whole = parse_tool_calls(f, text);
    for (size_t piece = 1; piece <= text.size(); ++piece) {
      const ParsedToolCalls s = stream_in_pieces(f, text, piece);
      EXPECT_EQ(s.content, whole.content) << text << " in pieces of " << piece;
      ASSERT_EQ(s.calls.size(), whole.calls.size()) << text << " in pieces of " << piece;
      for (size_t i = 0; i < s.calls.size(); ++i) {
        EXPECT_EQ(s.calls[i].name, whole.calls[i].name);
        EXPECT_EQ(s.calls[i].arguments, whole.calls[i].arguments);
      }
    }
  }
  EXPECT_EQ(parse_tool_calls(ToolCallFormat::hermes, cases[0].second).calls.size(), 2u);
  EXPECT_EQ(parse_tool_calls(ToolCallFormat::hermes, cases[0].second).content, "Hi and <tool_call>{bad}</tool_call>");
}

}  // namespace
}  // namespace lmlab::server
