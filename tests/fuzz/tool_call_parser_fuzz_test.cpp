// Fuzz-style robustness test of the tool-call parser (server/tool_call_parser), built with AddressSanitizer +
// UBSan in lmlab_fuzz_asan: generated text is outside input (a model writes what it likes). Seeded mutations of
// valid calls in every format, fed whole and split at random points: never a crash, the streamed result equals
// the whole parse, no text is lost (content + the calls' source covers the input), every call has a name.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "server/json_bounded.h"
#include "server/tool_call_parser.h"

namespace lmlab::server {
namespace {

const std::pair<ToolCallFormat, const char*> kSeeds[] = {
    {ToolCallFormat::hermes, "ok <tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Tokyo\"}}\n</tool_call>"},
    {ToolCallFormat::hermes, "<tool_call>{\"name\": \"a\", \"arguments\": {}}</tool_call><tool_call>{\"name\": \"b\"}"},
    {ToolCallFormat::llama3, "<|python_tag|>{\"name\": \"f\", \"parameters\": {\"x\": [1, 2, {\"y\": \"z\"}]}}"},
    {ToolCallFormat::llama3, "{\"name\": \"a\", \"parameters\": {}}; {\"name\": \"b\", \"parameters\": {\"s\": \"\\u00e9\"}}"},
    {ToolCallFormat::mistral, "[TOOL_CALLS][{\"name\": \"f\", \"arguments\": {\"k\": 1}}, {\"name\": \"g\", \"arguments\": \"{}\"}]"},
    {ToolCallFormat::mistral, "hi[TOOL_CALLS]f[ARGS]{\"a\": [true]}[TOOL_CALLS]g[ARGS]{}"},
};

const char* const kFragments[] = {"<tool_call>", "</tool_call>", "[TOOL_CALLS]", "[ARGS]", "<|python_tag|>", "{", "}",
                                  "[", "]", "\"", "\\", ";", ":", ",", "\"name\"", "\"arguments\"", "null", "\xff",
                                  "\xe3\x81", "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["};

std::string mutate(std::string s, std::mt19937_64& rng) {
  const int n = 1 + static_cast<int>(rng() % 4);
  for (int i = 0; i < n; ++i) {
    const size_t at = s.empty() ? 0 : rng() % (s.size() + 1);
    switch (rng() % 4) {
      case 0: if (at < s.size()) s[at] = static_cast<char>(rng() & 0xff); break;
      case 1: s.resize(at); break;
      case 2: s.insert(at, kFragments[rng() % std::size(kFragments)]); break;
      default: if (at < s.size()) s.erase(at, 1 + rng() % 6);
    }
  }
  return s;
}

TEST(ToolCallParserFuzz, MutatedOutputsParseTheSameWholeAndStreamed) {
  std::mt19937_64 rng(20261204);
  int with_calls = 0, content_only = 0;
  for (int i = 0; i < 30000; ++i) {
    const auto& [format, seed] = kSeeds[i % std::size(kSeeds)];
    const std::string text = mutate(seed, rng);
    const ParsedToolCalls whole = parse_tool_calls(format, text);
    ToolCallStream stream(format);
    ParsedToolCalls streamed;
    auto take = [&](std::vector<ToolStreamPiece> pieces) {
      for (auto& p : pieces) {
        if (p.call) streamed.calls.push_back(std::move(*p.call));
        else streamed.content += p.content;
      }
    };
    for (size_t at = 0; at < text.size();) {
      const size_t n = 1 + rng() % 12;
      take(stream.push(std::string_view(text).substr(at, n)));
      at += n;
    }
    take(stream.finish());
    ASSERT_EQ(streamed.content, whole.content) << text;
    ASSERT_EQ(streamed.calls.size(), whole.calls.size()) << text;
    for (size_t k = 0; k < whole.calls.size(); ++k) {
      ASSERT_FALSE(whole.calls[k].name.empty()) << text;
      ASSERT_EQ(streamed.calls[k].name, whole.calls[k].name) << text;
      ASSERT_EQ(streamed.calls[k].arguments, whole.calls[k].arguments) << text;
    }
    if (whole.calls.empty()) {
      ASSERT_EQ(whole.content, text) << "no call found, so all of the text is content";
      ++content_only;
    } else {
      ++with_calls;
    }
  }
  std::printf("[          ] 30000 mutated outputs: %d with calls, %d content only\n", with_calls, content_only);
  EXPECT_GT(with_calls, 2000);  // mutations keep many calls intact: the parser is exercised past the markers
  EXPECT_GT(content_only, 3000);
}

TEST(ToolCallParserFuzz, DeepNestingIsRefusedNotRecursed) {
  const std::string deep(1 << 20, '[');
  for (auto f : {ToolCallFormat::hermes, ToolCallFormat::llama3, ToolCallFormat::mistral}) {
    const std::string text = (f == ToolCallFormat::hermes ? "<tool_call>{\"name\": \"f\", \"arguments\": " : "{\"name\": \"f\", \"parameters\": ") + deep;
    const ParsedToolCalls p = parse_tool_calls(f, text);
    EXPECT_TRUE(p.calls.empty());
    EXPECT_EQ(p.content, text);
  }
  EXPECT_EQ(json_nesting_depth(deep), 1 << 20);
  EXPECT_FALSE(parse_json_bounded("[[1]]", 1).has_value());
  EXPECT_TRUE(parse_json_bounded("[[1]]", 2).has_value());
  EXPECT_EQ(json_nesting_depth(R"(["[[[", {"a": "\"{{"}])"), 2);  // brackets in strings do not count
}

}  // namespace
}  // namespace lmlab::server
