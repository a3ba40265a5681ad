// Tool calling through the server: the request's tools, tool_choice and tool messages reach the chat template
// as transformers gives them (checked on the rendered prompt), invalid ones are 400s naming the field, parsed
// calls come out as OpenAI tool_calls (whole and as stream deltas), and a real server renders tools into the
// prompt it runs.
#include <gtest/gtest.h>
#include <httplib.h>

#include <chrono>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <thread>

#include "fixtures.h"
#include "lmlab/chat_template.h"
#include "lmlab/error.h"
#include "lmlab/model.h"
#include "lmlab/server.h"
#include "server/answer_stream.h"
#include "server/request.h"
#include "server/responses.h"
#include "tiny_model.h"
#include "tool_template.h"

namespace lmlab {
namespace {

using nlohmann::json;
using nlohmann::ordered_json;
using server::Endpoint;

const json kWeatherTool = {{"type", "function"},
                           {"function",
                            {{"name", "get_weather"},
                             {"description", "Current weather of a city"},
                             {"parameters",
                              {{"type", "object"},
                               {"properties", {{"city", {{"type", "string"}}}}},
                               {"required", {"city"}}}}}}};

class ToolRequestTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    model_ = Model::load(test::model_dir("coder-dense"));
    chat_ = new ChatTemplate(ChatTemplate::from_string(test::kHermesToolTemplate, "tool_template"));
  }
  static void TearDownTestSuite() {
    delete chat_;
    model_.reset();
  }
  static server::RequestContext ctx() {
    return {.model = model_.get(),
            .chat_template = chat_,
            .chat_template_error = "",
            .default_max_tokens = 16,
            .tool_format = server::tool_call_format_for(chat_->source(), model_->info().arch)};
  }
  static server::GenerationRequest parse(const json& body, Endpoint ep = Endpoint::chat) {
    return server::parse_generation_request(body.dump(), ep, ctx());
  }
  static std::string prompt_text(const json& body) {
    return model_->tokenizer().decode(parse(body).prompt);
  }
  // The parameter an invalid body is refused for.
  static std::string refused_param(const json& body, Endpoint ep = Endpoint::chat) {
    try {
      parse(body, ep);
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::invalid_input) << e.what();
      return e.where();
    }
    ADD_FAILURE() << "accepted: " << body.dump();
    return "";
  }
  static inline std::shared_ptr<Model> model_;
  static inline ChatTemplate* chat_ = nullptr;
};

const json kUserAsks = json::array({{{"role", "user"}, {"content", "Weather in Tokyo?"}}});

TEST_F(ToolRequestTest, ToolsReachTheTemplateAsDicts) {
  const std::string with = prompt_text({{"messages", kUserAsks}, {"tools", {kWeatherTool}}});
  // transformers renders `tool | tojson` of the dict the client sent, keys in the body's order (nlohmann::json
  // wrote them sorted here), with json.dumps' ", " and ": " separators.
  EXPECT_NE(with.find("<tools>\n{\"function\": {\"description\": \"Current weather of a city\", "
                      "\"name\": \"get_weather\", \"parameters\": {\"properties\": {\"city\": {\"type\": \"string\"}}"),
            std::string::npos)
      << with;
  const std::string expected = chat_->apply(ordered_json(kUserAsks), true, ordered_json{{"tools", {kWeatherTool}}});
  EXPECT_EQ(with, expected);
  const std::string without = prompt_text({{"messages", kUserAsks}});
  EXPECT_EQ(without.find("<tools>"), std::string::npos);
  EXPECT_EQ(parse({{"messages", kUserAsks}, {"tools", {kWeatherTool}}}).tool_format, server::ToolCallFormat::hermes);
  EXPECT_EQ(parse({{"messages", kUserAsks}}).tool_format, server::ToolCallFormat::none);
  // tool_choice "none": the tools are still shown (as vLLM does) but the answer is not parsed for calls.
  const auto none = parse({{"messages", kUserAsks}, {"tools", {kWeatherTool}}, {"tool_choice", "none"}});
  EXPECT_EQ(none.tool_format, server::ToolCallFormat::none);
  EXPECT_NE(model_->tokenizer().decode(none.prompt).find("get_weather"), std::string::npos);
  const auto named = parse({{"messages", kUserAsks},
                            {"tools", {kWeatherTool}},
                            {"tool_choice", {{"type", "function"}, {"function", {{"name", "get_weather"}}}}}});
  EXPECT_EQ(named.tool_format, server::ToolCallFormat::hermes);
}

TEST_F(ToolRequestTest, ToolRoundTripMessagesRenderArgumentsAsADict) {
  const json messages = json::array(
      {{{"role", "user"}, {"content", "Weather in Tokyo?"}},
       {{"role", "assistant"},
        {"content", nullptr},
        {"tool_calls",
         {{{"id", "call_abc"},
           {"type", "function"},
           {"function", {{"name", "get_weather"}, {"arguments", "{\"city\": \"Tokyo\"}"}}}}}}},
       {{"role", "tool"}, {"tool_call_id", "call_abc"}, {"content", "21 C, clear"}}});
  const std::string text = prompt_text({{"messages", messages}, {"tools", {kWeatherTool}}});
  // The JSON string became a dict: tojson prints it as an object, not as a quoted string.
  EXPECT_NE(text.find("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Tokyo\"}}\n</tool_call>"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("<|im_start|>user\n<tool_response>\n21 C, clear\n</tool_response><|im_end|>"), std::string::npos)
      << text;
  // Arguments that are not a JSON object stay the string they were.
  json odd = messages;
  odd[1]["tool_calls"][0]["function"]["arguments"] = "not json";
  EXPECT_NE(prompt_text({{"messages", odd}}).find("\"arguments\": \"not json\""), std::string::npos);
}

TEST_F(ToolRequestTest, InvalidToolFieldsAreRefusedNamingTheField) {
  const json m = kUserAsks;
  json bad_type = kWeatherTool;
  bad_type["type"] = "retrieval";
  json bad_name = kWeatherTool;
  bad_name["function"]["name"] = "get weather!";
  json bad_params = kWeatherTool;
  bad_params["function"]["parameters"] = "object";
  EXPECT_EQ(refused_param({{"messages", m}, {"tools", kWeatherTool}}), "tools");
  EXPECT_EQ(refused_param({{"messages", m}, {"tools", {kWeatherTool, bad_type}}}), "tools[1].type");
  EXPECT_EQ(refused_param({{"messages", m}, {"tools", {bad_name}}}), "tools[0].function.name");
  EXPECT_EQ(refused_param({{"messages", m}, {"tools", {bad_params}}}), "tools[0].function.parameters");
  EXPECT_EQ(refused_param({{"messages", m}, {"tools", json::array({json::object()})}}), "tools[0].type");
  EXPECT_EQ(refused_param({{"messages", m}, {"tools", json(std::vector<json>(129, kWeatherTool))}}), "tools");
  EXPECT_EQ(refused_param({{"messages", m}, {"tool_choice", "auto"}}), "tool_choice");
  EXPECT_EQ(refused_param({{"messages", m}, {"tools", {kWeatherTool}}, {"tool_choice", "always"}}), "tool_choice");
  EXPECT_EQ(refused_param({{"messages", m},
                           {"tools", {kWeatherTool}},
                           {"tool_choice", {{"type", "function"}, {"function", {{"name", "other"}}}}}}),
            "tool_choice.function.name");
  EXPECT_EQ(refused_param({{"messages", m}, {"tools", {kWeatherTool}}, {"parallel_tool_calls", "yes"}}),
            "parallel_tool_calls");
  EXPECT_EQ(refused_param({{"messages", json::array({{{"role", "tool"}, {"content", "x"}}})}}), "messages");
  EXPECT_EQ(refused_param({{"messages", json::array({{{"role", "assistant"}, {"tool_calls", "f()"}}})}}), "messages");
  EXPECT_EQ(refused_param({{"messages", json::array({{{"role", "assistant"},
                                                      {"tool_calls", {{{"function", {{"name", "f"}, {"arguments", 3}}}}}}}})}}),
            "messages");
  // A body nesting deeper than the bound is refused before it is built (copying it would recurse).
  const std::string deep = "{\"messages\": " + std::string(100, '[') + std::string(100, ']') + "}";
  try {
    server::parse_generation_request(deep, Endpoint::chat, ctx());
    ADD_FAILURE() << "deep body accepted";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("nests deeper"), std::string::npos) << e.what();
  }
}

TEST_F(ToolRequestTest, LogprobsParameters) {
  EXPECT_EQ(parse({{"messages", kUserAsks}}).sampling.logprobs, -1);
  EXPECT_EQ(parse({{"messages", kUserAsks}, {"logprobs", true}}).sampling.logprobs, 0);
  EXPECT_EQ(parse({{"messages", kUserAsks}, {"logprobs", true}, {"top_logprobs", 20}}).sampling.logprobs, 20);
  EXPECT_EQ(parse({{"prompt", "x = 1"}, {"logprobs", 3}}, Endpoint::completions).sampling.logprobs, 3);
  EXPECT_EQ(refused_param({{"messages", kUserAsks}, {"logprobs", true}, {"top_logprobs", 21}}), "top_logprobs");
  EXPECT_EQ(refused_param({{"messages", kUserAsks}, {"top_logprobs", 2}}), "top_logprobs");
  EXPECT_EQ(refused_param({{"messages", kUserAsks}, {"logprobs", 2}}), "logprobs");
  EXPECT_EQ(refused_param({{"prompt", "x"}, {"logprobs", -1}}, Endpoint::completions), "logprobs");
  EXPECT_EQ(refused_param({{"prompt", "x"}, {"logprobs", true}}, Endpoint::completions), "logprobs");
}

// A generation outcome as run_generation would give it, with `text` as the answer.
server::GenerationOutcome outcome(const std::string& text) {
  server::GenerationOutcome out;
  out.text = text;
  out.prompt_tokens = 5;
  out.completion_tokens = 7;
  out.finish_reason = "stop";
  return out;
}

const std::string kAnswerWithCall =
    "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Tokyo\"}}\n</tool_call>";

TEST_F(ToolRequestTest, WholeAnswerCarriesToolCalls) {
  server::GenerationRequest rq = parse({{"messages", kUserAsks}, {"tools", {kWeatherTool}}});
  const server::ResponseIds ids{"chatcmpl-1", 0, "m"};
  json body = json::parse(server::completion_body(rq, ids, outcome(kAnswerWithCall), model_->tokenizer()));
  const json& choice = body["choices"][0];
  EXPECT_EQ(choice["finish_reason"], "tool_calls");
  EXPECT_EQ(choice["message"]["content"], "Let me check.\n");
  ASSERT_EQ(choice["message"]["tool_calls"].size(), 1u);
  const json& call = choice["message"]["tool_calls"][0];
  EXPECT_EQ(call["id"].get<std::string>().rfind("call_", 0), 0u);
  EXPECT_EQ(call["type"], "function");
  EXPECT_EQ(call["function"]["name"], "get_weather");
  EXPECT_EQ(json::parse(call["function"]["arguments"].get<std::string>()), json({{"city", "Tokyo"}}));
  // Only calls: content is null. Without tools the same text is plain content.
  body = json::parse(server::completion_body(rq, ids, outcome(kAnswerWithCall.substr(14)), model_->tokenizer()));
  EXPECT_TRUE(body["choices"][0]["message"]["content"].is_null()) << body.dump();
  rq.tool_format = server::ToolCallFormat::none;
  body = json::parse(server::completion_body(rq, ids, outcome(kAnswerWithCall), model_->tokenizer()));
  EXPECT_EQ(body["choices"][0]["message"]["content"], kAnswerWithCall);
  EXPECT_EQ(body["choices"][0]["finish_reason"], "stop");
  EXPECT_FALSE(body["choices"][0]["message"].contains("tool_calls"));
}

std::vector<json> sse_payloads(const std::string& sse) {
  std::vector<json> out;
  size_t pos = 0;
  for (size_t end; (end = sse.find("\n\n", pos)) != std::string::npos; pos = end + 2) {
    if (sse[pos] == ':') continue;  // an SSE comment (keep-alive)
    EXPECT_EQ(sse.compare(pos, 6, "data: "), 0) << sse.substr(pos, end - pos);
    out.push_back(json::parse(sse.substr(pos + 6, end - pos - 6)));
  }
  EXPECT_EQ(pos, sse.size());
  return out;
}

TEST_F(ToolRequestTest, StreamedToolCallChunks) {
  server::GenerationRequest rq = parse({{"messages", kUserAsks}, {"tools", {kWeatherTool}}});
  rq.include_usage = true;
  server::AnswerStream stream(rq, {"chatcmpl-2", 0, "m"}, model_->tokenizer());
  std::string sse = stream.start();
  std::vector<size_t> chunks_after_piece;
  for (size_t i = 0; i < kAnswerWithCall.size(); i += 5) {
    sse += stream.push(kAnswerWithCall.substr(i, 5), {});
    chunks_after_piece.push_back(sse_payloads(sse).size());
  }
  sse += stream.finish(outcome(kAnswerWithCall));
  const std::vector<json> ev = sse_payloads(sse);
  ASSERT_GE(ev.size(), 5u);
  EXPECT_EQ(ev[0]["choices"][0]["delta"]["role"], "assistant");
  std::string content;
  std::vector<json> calls;
  for (size_t i = 1; i + 2 < ev.size(); ++i) {
    EXPECT_EQ(ev[i]["object"], "chat.completion.chunk");
    const json& delta = ev[i]["choices"][0]["delta"];
    if (delta.contains("content")) content += delta["content"].get<std::string>();
    if (delta.contains("tool_calls")) calls.push_back(delta["tool_calls"]);
    EXPECT_TRUE(ev[i]["choices"][0]["finish_reason"].is_null());
  }
  EXPECT_EQ(content, "Let me check.\n");
  ASSERT_EQ(calls.size(), 1u);
  ASSERT_EQ(calls[0].size(), 1u);
  EXPECT_EQ(calls[0][0]["index"], 0);
  EXPECT_EQ(calls[0][0]["id"].get<std::string>().rfind("call_", 0), 0u);
  EXPECT_EQ(calls[0][0]["type"], "function");
  EXPECT_EQ(calls[0][0]["function"]["name"], "get_weather");
  EXPECT_EQ(json::parse(calls[0][0]["function"]["arguments"].get<std::string>()), json({{"city", "Tokyo"}}));
  const json& last = ev[ev.size() - 2];
  EXPECT_EQ(last["choices"][0]["finish_reason"], "tool_calls");
  EXPECT_EQ(last["choices"][0]["delta"], json::object());
  EXPECT_TRUE(ev.back()["choices"].empty());
  EXPECT_EQ(ev.back()["usage"]["completion_tokens"], 7);
  // The content went out before the call was complete: streamed, not buffered to the end.
  EXPECT_GT(chunks_after_piece[4], 1u);
}

TEST_F(ToolRequestTest, HeldTextSendsKeepAliveComments) {
  const server::GenerationRequest rq = parse({{"messages", kUserAsks}, {"tools", {kWeatherTool}}});
  server::AnswerStream every_time(rq, {"chatcmpl-3", 0, "m"}, model_->tokenizer(), std::chrono::milliseconds(0));
  EXPECT_EQ(every_time.push("<tool_call>{\"name\"", {}), server::kSseKeepAlive);  // held: a comment goes out
  server::AnswerStream hourly(rq, {"chatcmpl-4", 0, "m"}, model_->tokenizer(), std::chrono::hours(1));
  EXPECT_EQ(hourly.push("<tool_call>{\"name\"", {}), "");  // held, and the interval has not passed
  EXPECT_EQ(hourly.push(": \"f\"}</tool_call>", {}).rfind("data: ", 0), 0u);  // the call itself
}

// A served tiny model whose chat template takes tools: the prompt the server runs holds them.
TEST(ServerTools, ServerRendersToolsIntoThePromptItRuns) {
  test::TinyModel tiny;
  { std::ofstream(tiny.dir() / "chat_template.jinja") << test::kHermesToolTemplate; }
  auto model = Model::load(tiny.dir());
  ServerOptions o;
  o.port = 0;
  o.max_tokens = 64;
  Server server(model, o);
  EXPECT_EQ(server.tool_call_format(), "hermes");  // the template writes <tool_call>
  std::thread t([&] { server.listen(); });
  httplib::Client c("127.0.0.1", server.bound_port());
  c.set_read_timeout(60, 0);
  const ChatTemplate tpl = ChatTemplate::from_model_dir(tiny.dir());
  auto prompt_tokens = [&](const ordered_json& extra) {
    return model->tokenizer().encode(tpl.apply(ordered_json(kUserAsks), true, extra), false).size();
  };
  const json request = {{"messages", kUserAsks}, {"tools", {kWeatherTool}}, {"max_tokens", 4}, {"temperature", 0}};
  auto r = c.Post("/v1/chat/completions", request.dump(), "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const json body = json::parse(r->body);
  EXPECT_EQ(body["usage"]["prompt_tokens"], prompt_tokens({{"tools", {kWeatherTool}}}));
  EXPECT_GT(body["usage"]["prompt_tokens"].get<size_t>(), prompt_tokens(ordered_json::object()) + 30);
  // Streamed with logprobs: role chunk, deltas that each carry their tokens' logprobs, a finish chunk, [DONE].
  json streamed = request;
  streamed["stream"] = true;
  streamed["logprobs"] = true;
  streamed["top_logprobs"] = 2;
  streamed["ignore_eos"] = true;
  r = c.Post("/v1/chat/completions", streamed.dump(), "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  ASSERT_GE(r->body.size(), 14u);
  EXPECT_EQ(r->body.substr(r->body.size() - 14), "data: [DONE]\n\n");
  const std::vector<json> ev = sse_payloads(r->body.substr(0, r->body.size() - 14));
  ASSERT_GE(ev.size(), 2u);
  EXPECT_EQ(ev.front()["choices"][0]["delta"]["role"], "assistant");
  size_t logged = 0;
  for (size_t i = 1; i < ev.size(); ++i) {
    const json& choice = ev[i]["choices"][0];
    EXPECT_EQ(choice["index"], 0);
    if (choice.contains("logprobs"))
      for (const json& e : choice["logprobs"]["content"]) {
        EXPECT_EQ(e["top_logprobs"].size(), 2u);
        ++logged;
      }
    const bool last = i + 1 == ev.size();
    EXPECT_EQ(choice["finish_reason"].is_null(), !last) << ev[i].dump();
  }
  EXPECT_EQ(logged, 4u);  // every generated token, wherever its text went
  const std::string finish = ev.back()["choices"][0]["finish_reason"];
  EXPECT_TRUE(finish == "length" || finish == "tool_calls") << finish;
  json bad = request;
  bad["tools"][0]["function"]["name"] = "";
  r = c.Post("/v1/chat/completions", bad.dump(), "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(json::parse(r->body)["error"]["param"], "tools[0].function.name");
  server.stop();
  t.join();
}

}  // namespace
}  // namespace lmlab
