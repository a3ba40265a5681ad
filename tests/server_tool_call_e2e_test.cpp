// A real tool call through `lmlab serve`: a scripted model (tests/scripted_model.h) answers with a Llama 3 style
// call, and the server returns it as OpenAI tool_calls, whole and streamed; without tools the same answer is
// plain content.
#include <gtest/gtest.h>
#include <httplib.h>

#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "lmlab/chat_template.h"
#include "lmlab/model.h"
#include "lmlab/server.h"
#include "scripted_model.h"

namespace lmlab {
namespace {

using nlohmann::json;
using nlohmann::ordered_json;

// Llama 3 header markers (the template text is what picks the llama3 call format).
constexpr const char* kLlamaTemplate =
    "{%- if tools %}<|start_header_id|>system<|end_header_id|>{{ '\\n\\n' }}Tools: {{ tools | tojson }}<|eot_id|>"
    "{%- endif %}"
    "{%- for m in messages %}<|start_header_id|>{{ m.role }}<|end_header_id|>{{ '\\n\\n' }}{{ m.content }}<|eot_id|>"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>{{ '\\n\\n' }}{%- endif %}";

constexpr const char* kCall = R"({"name":"get_weather","parameters":{"city":"Paris"}})";

const json kTool = {{"type", "function"},
                    {"function", {{"name", "get_weather"}, {"parameters", {{"type", "object"}}}}}};
const json kMessages = json::array({{{"role", "user"}, {"content", "Weather in Paris?"}}});

TEST(ServerToolCallE2E, ScriptedModelsCallComesBackAsToolCalls) {
  // Pieces of the call that coder-dense's vocabulary would spell with repeated tokens.
  test::ScriptedModel scripted(kLlamaTemplate,
                               {"{\"name\":", "\"get_weather\"", ",\"parameters\":", "{\"city\":", "\"Paris\"", "}}"});
  int32_t eos = -1;
  {
    auto model = Model::load(scripted.dir());
    const ChatTemplate tpl = ChatTemplate::from_model_dir(scripted.dir());
    const std::string prompt = tpl.apply(ordered_json(kMessages), true, ordered_json{{"tools", {kTool}}});
    const std::vector<int32_t> prompt_ids = model->tokenizer().encode(prompt, false);
    const std::vector<int32_t> answer = model->tokenizer().encode(kCall, false);
    ASSERT_FALSE(model->info().eos_ids.empty());
    eos = model->info().eos_ids[0];
    std::set<int32_t> distinct(answer.begin(), answer.end());
    distinct.insert(prompt_ids.back());
    ASSERT_EQ(distinct.size(), answer.size() + 1) << "the script needs distinct tokens";
    // Without tools the prompt ends the same way (the assistant header), so the script answers both.
    const std::string plain = tpl.apply(ordered_json(kMessages), true);
    ASSERT_EQ(model->tokenizer().encode(plain, false).back(), prompt_ids.back());
    scripted.script(prompt_ids.back(), answer, eos);
  }
  auto model = Model::load(scripted.dir());
  ServerOptions o;
  o.port = 0;
  o.max_tokens = 64;
  Server server(model, o);
  std::thread t([&] { server.listen(); });
  httplib::Client c("127.0.0.1", server.bound_port());
  c.set_read_timeout(60, 0);
  const json request = {{"messages", kMessages}, {"tools", {kTool}}, {"temperature", 0}};

  auto r = c.Post("/v1/chat/completions", request.dump(), "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  json body = json::parse(r->body);
  const json& choice = body["choices"][0];
  EXPECT_EQ(choice["finish_reason"], "tool_calls") << body.dump();
  EXPECT_TRUE(choice["message"]["content"].is_null()) << body.dump();
  ASSERT_EQ(choice["message"]["tool_calls"].size(), 1u) << body.dump();
  const json& call = choice["message"]["tool_calls"][0];
  EXPECT_EQ(call["type"], "function");
  EXPECT_EQ(call["id"].get<std::string>().rfind("call_", 0), 0u);
  EXPECT_EQ(call["function"]["name"], "get_weather");
  EXPECT_EQ(json::parse(call["function"]["arguments"].get<std::string>()), json({{"city", "Paris"}}));

  json streamed = request;
  streamed["stream"] = true;
  r = c.Post("/v1/chat/completions", streamed.dump(), "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  std::vector<json> deltas;
  std::string finish;
  size_t pos = 0;
  for (size_t end; (end = r->body.find("\n\n", pos)) != std::string::npos; pos = end + 2) {
    const std::string ev = r->body.substr(pos, end - pos);
    if (ev[0] == ':' || ev == "data: [DONE]") continue;
    const json chunk = json::parse(ev.substr(6));
    const json& c0 = chunk["choices"][0];
    if (c0["delta"].contains("tool_calls")) deltas.push_back(c0["delta"]["tool_calls"][0]);
    EXPECT_FALSE(c0["delta"].contains("content") && !c0["delta"]["content"].get<std::string>().empty())
        << "a call is not content: " << ev;
    if (!c0["finish_reason"].is_null()) finish = c0["finish_reason"];
  }
  ASSERT_EQ(deltas.size(), 1u) << r->body;
  EXPECT_EQ(deltas[0]["index"], 0);
  EXPECT_EQ(deltas[0]["function"]["name"], "get_weather");
  EXPECT_EQ(json::parse(deltas[0]["function"]["arguments"].get<std::string>()), json({{"city", "Paris"}}));
  EXPECT_EQ(finish, "tool_calls");

  // No tools: the same words are the answer's content.
  r = c.Post("/v1/chat/completions", json({{"messages", kMessages}, {"temperature", 0}}).dump(), "application/json");
  ASSERT_TRUE(r);
  body = json::parse(r->body);
  EXPECT_EQ(body["choices"][0]["message"]["content"], kCall);
  EXPECT_EQ(body["choices"][0]["finish_reason"], "stop");
  server.stop();
  t.join();
}

}  // namespace
}  // namespace lmlab
