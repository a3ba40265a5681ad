// The server's request parser is fed outside input: seeded mutations of valid /v1/completions and
// /v1/chat/completions bodies (byte flips, truncations, spliced JSON fragments, fields of the wrong type or out of
// range) must either parse into a request the engine can run or throw lmlab::Error naming a parameter; never
// another exception, a crash or a hang. (STYLE.md: a fuzz target beside every parser of outside input.)
#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "fixtures.h"
#include "lmlab/chat_template.h"
#include "lmlab/error.h"
#include "lmlab/model.h"
#include "server/request.h"
#include "text_mutations.h"

namespace lmlab {
namespace {

using server::Endpoint;

const char* const kSeeds[] = {
    R"({"model":"m","prompt":"def f(x):","max_tokens":8,"temperature":0,"stop":["\n\n"],"stream":true})",
    R"({"prompt":[1,2,3,4],"max_tokens":3,"seed":7,"top_p":0.9,"top_k":40,"min_p":0.05})",
    R"({"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}],"max_tokens":4})",
    R"({"messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}],)"
    R"("stream":true,"stream_options":{"include_usage":true},"max_completion_tokens":2,"stop":"x"})",
    R"({"messages":[{"role":"user","content":"weather?"}],"tools":[{"type":"function","function":{"name":"get_weather",)"
    R"("description":"d","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}],)"
    R"("tool_choice":{"type":"function","function":{"name":"get_weather"}},"logprobs":true,"top_logprobs":3})",
    R"({"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"","tool_calls":[{"id":"call_1",)"
    R"("type":"function","function":{"name":"f","arguments":"{\"a\": [1, {\"b\": 2}]}"}}]},)"
    R"({"role":"tool","tool_call_id":"call_1","content":"ok"}],"tools":[{"type":"function","function":{"name":"f"}}],)"
    R"("tool_choice":"auto","parallel_tool_calls":false})",
    R"({"prompt":"x = ","max_tokens":2,"logprobs":5})",
};

const char* const kFragments[] = {"null", "true", "-1", "0", "1e308", "-1e308", "1.5", "\"\"", "\"\\u0000\"", "[]",
                                  "{}", "[[]]", "{\"a\":{}}", "\"\\ud800\"", "9223372036854775807",
                                  "18446744073709551616", "[1,-5,99999999]", "\"role\"", "\"content\"", ",",
                                  "\"tool\"", "\"tool_calls\"", "\"none\"", "21", "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["};

TEST(ServerRequestFuzz, MutatedBodiesParseOrThrowLmlabError) {
  auto model = Model::load(test::model_dir("coder-dense"));
  const ChatTemplate chat = ChatTemplate::from_model_dir(test::model_dir("coder-dense"));
  const server::RequestContext ctx{.model = model.get(), .chat_template = &chat, .chat_template_error = "", .default_max_tokens = 16,
                                     .tool_format = server::ToolCallFormat::hermes};
  const int64_t ctx_size = model->info().ctx_size;
  std::mt19937_64 rng(20261126);
  int parsed = 0, rejected = 0;
  for (int i = 0; i < 100000; ++i) {
    const size_t seed = i % std::size(kSeeds);
    const std::string body = test::mutate_text(kSeeds[seed], rng, kFragments, 4);
    // Seeds 0, 1 and 6 are completions bodies, the others chat bodies; every 7th goes to the other endpoint.
    const bool chat = (seed >= 2 && seed != 6) != (i % 7 == 0);
    const Endpoint endpoint = chat ? Endpoint::chat : Endpoint::completions;
    try {
      const server::GenerationRequest rq = server::parse_generation_request(body, endpoint, ctx);
      ++parsed;
      ASSERT_FALSE(rq.prompt.empty()) << body;
      ASSERT_LT(static_cast<int64_t>(rq.prompt.size()), ctx_size) << body;
      for (int32_t id : rq.prompt) ASSERT_TRUE(id >= 0 && id < model->info().vocab) << body;
      ASSERT_GE(rq.sampling.max_tokens, 1) << body;
      ASSERT_LE(static_cast<int64_t>(rq.prompt.size()) + rq.sampling.max_tokens, ctx_size) << body;
    } catch (const Error&) {
      ++rejected;
    } catch (const std::exception& e) {
      FAIL() << "not an lmlab::Error: " << e.what() << "\nbody: " << body;
    }
  }
  std::printf("[          ] 100000 mutated bodies: %d parsed, %d rejected with lmlab::Error\n", parsed, rejected);
  EXPECT_GT(parsed, 1000);  // the mutations keep some bodies valid: the parser is exercised past the JSON layer
  EXPECT_GT(rejected, 10000);
  // The unmutated seeds parse.
  for (size_t i = 0; i < std::size(kSeeds); ++i)
    EXPECT_NO_THROW(server::parse_generation_request(kSeeds[i], i >= 2 && i != 6 ? Endpoint::chat : Endpoint::completions, ctx))
        << kSeeds[i];
}

}  // namespace
}  // namespace lmlab
