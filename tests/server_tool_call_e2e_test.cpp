// Real tool calls through `lmlab serve`: scripted models (tests/scripted_model.h) answer with a Llama 3 style
// call (returned as OpenAI tool_calls, whole and streamed; without tools the same answer is plain content) and
// with Qwen-style content plus two <tool_call> blocks (content streamed first, two indexed call deltas, every
// token's logprob delivered).
#include <gtest/gtest.h>
#include <httplib.h>

#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "lmlab/chat_template.h"
#include "lmlab/model.h"
#include "lmlab/server.h"
#include "scripted_model.h"
#include "tool_template.h"

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

// Scripts `scripted` to say `answer` after the chat prompt of kMessages rendered with `variables`, followed by
// `opening` (what the server appends for a forced call). The script keys on the prompt's last token, so the
// answer's tokens must differ from it and from each other.
void script_answer(test::ScriptedModel& scripted, const ordered_json& variables, const std::string& opening,
                   const std::string& answer) {
  auto model = Model::load(scripted.dir());
  const ChatTemplate tpl = ChatTemplate::from_model_dir(scripted.dir());
  const std::vector<int32_t> prompt_ids =
      model->tokenizer().encode(tpl.apply(ordered_json(kMessages), true, variables) + opening, false);
  const std::vector<int32_t> ids = model->tokenizer().encode(answer, false);
  std::set<int32_t> distinct(ids.begin(), ids.end());
  distinct.insert(prompt_ids.back());
  ASSERT_EQ(distinct.size(), ids.size() + 1) << "the script needs distinct tokens";
  ASSERT_EQ(model->tokenizer().decode(ids), answer);
  scripted.script(prompt_ids.back(), ids, model->info().eos_ids.at(0));
}

// The JSON payloads of an SSE body, without comments and [DONE].
std::vector<json> sse_chunks(const std::string& body) {
  std::vector<json> out;
  size_t pos = 0;
  for (size_t end; (end = body.find("\n\n", pos)) != std::string::npos; pos = end + 2) {
    const std::string ev = body.substr(pos, end - pos);
    if (ev[0] == ':' || ev == "data: [DONE]") continue;
    out.push_back(json::parse(ev.substr(6)));
  }
  return out;
}

// Qwen-style: content, then two <tool_call> blocks (the markers are added tokens, as in Qwen's tokenizer).
// The request answered whole and streamed is one get_weather(city="Paris") call: finish_reason "tool_calls", no
// content; streamed, a single indexed call delta.
void expect_one_weather_call(httplib::Client& c, const json& request) {
  auto r = c.Post("/v1/chat/completions", request.dump(), "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const json choice = json::parse(r->body)["choices"][0];
  EXPECT_EQ(choice["finish_reason"], "tool_calls") << r->body;
  EXPECT_TRUE(choice["message"]["content"].is_null()) << r->body;
  ASSERT_EQ(choice["message"]["tool_calls"].size(), 1u) << r->body;
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
  for (const json& chunk : sse_chunks(r->body)) {
    const json& c0 = chunk["choices"][0];
    if (c0["delta"].contains("tool_calls")) deltas.push_back(c0["delta"]["tool_calls"][0]);
    EXPECT_FALSE(c0["delta"].contains("content") && !c0["delta"]["content"].get<std::string>().empty())
        << "a call is not content: " << chunk.dump();
    if (!c0["finish_reason"].is_null()) finish = c0["finish_reason"];
  }
  ASSERT_EQ(deltas.size(), 1u) << r->body;
  EXPECT_EQ(deltas[0]["index"], 0);
  EXPECT_EQ(deltas[0]["function"]["name"], "get_weather");
  EXPECT_EQ(json::parse(deltas[0]["function"]["arguments"].get<std::string>()), json({{"city", "Paris"}}));
  EXPECT_EQ(finish, "tool_calls");
}

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
  EXPECT_EQ(server.tool_call_format(), "llama3");  // the template's <|start_header_id|>
  std::thread t([&] { server.listen(); });
  httplib::Client c("127.0.0.1", server.bound_port());
  c.set_read_timeout(60, 0);
  expect_one_weather_call(c, {{"messages", kMessages}, {"tools", {kTool}}, {"temperature", 0}});

  // No tools: the same words are the answer's content.
  auto r = c.Post("/v1/chat/completions", json({{"messages", kMessages}, {"temperature", 0}}).dump(), "application/json");
  ASSERT_TRUE(r);
  const json body = json::parse(r->body);
  EXPECT_EQ(body["choices"][0]["message"]["content"], kCall);
  EXPECT_EQ(body["choices"][0]["finish_reason"], "stop");
  server.stop();
  t.join();
}

TEST(ServerToolCallE2E, HermesContentThenTwoCallsStreamed) {
  // The script needs distinct tokens: the second call's markers are spelled by other added tokens.
  const std::vector<std::string> extra = {"Checking both.", "<tool_call>", "{\"name\":", "\"get_weather\"",
                                          ",\"arguments\":", "{\"city\":", "\"Paris\"", "}}",
                                          "</tool_call>\n<tool_call>", "{\"name\": \"get_time\"}</tool_call>"};
  const std::string answer = "Checking both.<tool_call>{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Paris\"}}"
                             "</tool_call>\n<tool_call>{\"name\": \"get_time\"}</tool_call>";
  test::ScriptedModel scripted(test::kHermesToolTemplate, extra);
  script_answer(scripted, ordered_json{{"tools", {kTool}}}, "", answer);
  if (HasFatalFailure()) return;
  auto model = Model::load(scripted.dir());
  ServerOptions o;
  o.port = 0;
  o.max_tokens = 64;
  Server server(model, o);
  std::thread t([&] { server.listen(); });
  httplib::Client c("127.0.0.1", server.bound_port());
  c.set_read_timeout(60, 0);
  const json request = {{"messages", kMessages}, {"tools", {kTool}}, {"temperature", 0}, {"stream", true},
                        {"logprobs", true}, {"stream_options", {{"include_usage", true}}}};
  auto r = c.Post("/v1/chat/completions", request.dump(), "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const std::vector<json> chunks = sse_chunks(r->body);
  std::string content, finish;
  std::vector<json> calls;
  size_t logged = 0, first_call_chunk = 0, content_chunk = 0;
  for (size_t i = 0; i < chunks.size(); ++i) {
    if (chunks[i]["choices"].empty()) continue;  // the usage chunk
    const json& c0 = chunks[i]["choices"][0];
    if (c0["delta"].contains("content") && !c0["delta"]["content"].get<std::string>().empty()) {
      content += c0["delta"]["content"].get<std::string>();
      content_chunk = i;
    }
    if (c0["delta"].contains("tool_calls")) {
      for (const json& tc : c0["delta"]["tool_calls"]) calls.push_back(tc);
      if (!first_call_chunk) first_call_chunk = i;
    }
    if (c0.contains("logprobs")) logged += c0["logprobs"]["content"].size();
    if (!c0["finish_reason"].is_null()) finish = c0["finish_reason"];
  }
  EXPECT_EQ(content, "Checking both.");
  EXPECT_LT(content_chunk, first_call_chunk);  // the content went out first
  ASSERT_EQ(calls.size(), 2u) << r->body;
  EXPECT_EQ(calls[0]["index"], 0);
  EXPECT_EQ(calls[1]["index"], 1);
  EXPECT_EQ(calls[0]["function"]["name"], "get_weather");
  EXPECT_EQ(json::parse(calls[0]["function"]["arguments"].get<std::string>()), json({{"city", "Paris"}}));
  EXPECT_EQ(calls[1]["function"]["name"], "get_time");
  EXPECT_EQ(calls[1]["function"]["arguments"], "{}");
  EXPECT_NE(calls[0]["id"], calls[1]["id"]);
  EXPECT_EQ(finish, "tool_calls");
  const json& usage = chunks.back()["usage"];
  EXPECT_EQ(logged, usage["completion_tokens"].get<size_t>());  // every token's logprob went out somewhere
  server.stop();
  t.join();
}

// tool_choice naming a function: the server opens the call itself (the prompt ends with the Hermes opener and the
// function's name), so the model only writes the arguments; the answer is that call, whole and streamed.
TEST(ServerToolCallE2E, ANamedToolChoiceForcesTheCall) {
  const std::vector<std::string> extra = {"{\"city\":", "\"Paris\"", "}}", "\n</tool_call>"};
  const std::string answer = "{\"city\":\"Paris\"}}\n</tool_call>";
  const json forced = {{"type", "function"}, {"function", {{"name", "get_weather"}}}};
  test::ScriptedModel scripted(test::kHermesToolTemplate, extra);
  script_answer(scripted, ordered_json{{"tools", {kTool}}, {"tool_choice", forced}},
                "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": ", answer);
  if (HasFatalFailure()) return;
  auto model = Model::load(scripted.dir());
  ServerOptions o;
  o.port = 0;
  o.max_tokens = 32;
  Server server(model, o);
  ASSERT_EQ(server.tool_call_format(), "hermes");
  std::thread t([&] { server.listen(); });
  httplib::Client c("127.0.0.1", server.bound_port());
  c.set_read_timeout(60, 0);
  expect_one_weather_call(c, {{"messages", kMessages}, {"tools", {kTool}}, {"tool_choice", forced}, {"temperature", 0}});
  server.stop();
  t.join();
}

}  // namespace
}  // namespace lmlab
