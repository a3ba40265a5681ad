// `lmlab serve` over loopback: the real Server on 127.0.0.1 (port 0) with coder-dense, driven by httplib::Client.
// Checks the OpenAI shapes, that greedy completions equal in-process generate(), SSE streaming, /metrics,
// the error bodies (status, type, param), cancellation when a streaming client hangs up, and concurrency.
#include "lmlab/server.h"

#include <gtest/gtest.h>
#include <httplib.h>

#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "fixtures.h"
#include "lmlab/chat_template.h"
#include "lmlab/generate.h"
#include "lmlab/model.h"

namespace lmlab {
namespace {

using nlohmann::json;

struct Running {
  std::unique_ptr<Server> server;
  std::thread thread;
  Running(std::shared_ptr<Model> model, ServerOptions o) : server(std::make_unique<Server>(std::move(model), o)) {
    thread = std::thread([s = server.get()] { s->listen(); });
  }
  ~Running() {
    server->stop();
    thread.join();
  }
};

class ServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    model_ = Model::load(test::model_dir("coder-dense"));
    ServerOptions o;
    o.port = 0;
    o.max_tokens = 4096;  // the cap; every request below names its own max_tokens
    o.parallel = 2;
    running_ = new Running(model_, o);
  }
  static void TearDownTestSuite() {
    delete running_;
    running_ = nullptr;
    model_.reset();
  }

  static httplib::Client client(int port = 0) {
    httplib::Client c("127.0.0.1", port ? port : running_->server->bound_port());
    c.set_read_timeout(60, 0);
    return c;
  }
  static httplib::Result post(const std::string& path, const json& body) {
    return client().Post(path.c_str(), body.dump(), "application/json");
  }
  // In-process reference: what generate() makes of `prompt` greedily.
  static GenerationResult reference(const std::vector<int32_t>& prompt, int64_t max_tokens) {
    SamplingParams sp;
    sp.max_tokens = max_tokens;
    auto session = model_->new_session();
    return generate(*session, prompt, sp);
  }
  static double metric(const std::string& name) {
    auto r = client().Get("/metrics");
    EXPECT_TRUE(r && r->status == 200);
    if (!r) return -1;
    std::istringstream in(r->body);
    std::string line;
    while (std::getline(in, line))
      if (line.rfind("lmlab_" + name + " ", 0) == 0) return std::stod(line.substr(name.size() + 7));
    ADD_FAILURE() << "no metric lmlab_" << name;
    return -1;
  }
  // Waits (up to 20 s) for lmlab_requests_active to reach 0: a hung-up client is noticed at the next write.
  static void wait_until_idle() {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (metric("requests_active") != 0 && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  // POSTs a streaming request and returns the "data: ..." payloads in order.
  static std::vector<std::string> stream_events(const std::string& path, const json& body) {
    std::string raw;
    httplib::Request req;
    req.method = "POST";
    req.path = path;
    req.body = body.dump();
    req.set_header("Content-Type", "application/json");
    req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
      raw.append(data, n);
      return true;
    };
    auto c = client();
    auto r = c.send(req);
    EXPECT_TRUE(r);
    if (r) {
      EXPECT_EQ(r->status, 200);
    }
    std::vector<std::string> events;
    size_t pos = 0;
    for (size_t end; (end = raw.find("\n\n", pos)) != std::string::npos; pos = end + 2) {
      const std::string ev = raw.substr(pos, end - pos);
      EXPECT_EQ(ev.rfind("data: ", 0), 0u) << ev;
      events.push_back(ev.substr(6));
    }
    EXPECT_EQ(pos, raw.size()) << "trailing bytes after the last event";
    return events;
  }
  static void expect_error(const httplib::Result& r, int status, const std::string& type, const json& param) {
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, status) << r->body;
    const json body = json::parse(r->body, nullptr, false);
    ASSERT_TRUE(body.is_object() && body.contains("error")) << r->body;
    const json& e = body["error"];
    EXPECT_EQ(e.value("type", ""), type) << r->body;
    EXPECT_EQ(e["param"], param) << r->body;
    EXPECT_TRUE(e["message"].is_string() && !e["message"].get<std::string>().empty()) << r->body;
    EXPECT_TRUE(e.contains("code")) << r->body;
  }

  static inline std::shared_ptr<Model> model_;
  static inline Running* running_ = nullptr;
};

const json kChatMessages =
    json::array({{{"role", "user"}, {"content", "Write a Python function that adds two numbers."}}});

TEST_F(ServerTest, HealthAndModels) {
  auto h = client().Get("/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
  const json health = json::parse(h->body);
  EXPECT_EQ(health["status"], "ok");
  // The options the model runs with, every key of the option table (lmlab/options.h).
  EXPECT_EQ(health["options"], json::parse(options_to_json_text(model_->options())));
  EXPECT_EQ(health["options"].size(), engine_options().size());
  auto m = client().Get("/v1/models");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->status, 200);
  const json models = json::parse(m->body);
  EXPECT_EQ(models["object"], "list");
  ASSERT_EQ(models["data"].size(), 1u);
  EXPECT_EQ(models["data"][0]["id"], "coder-dense");
  EXPECT_EQ(models["data"][0]["object"], "model");
}

TEST_F(ServerTest, CompletionEqualsInProcessGreedy) {
  const std::string prompt = "def fibonacci(n):\n";
  const auto ids = model_->tokenizer().encode(prompt, true);
  const GenerationResult want = reference(ids, 12);
  for (const json& p : {json(prompt), json(ids)}) {
    auto r = post("/v1/completions", {{"prompt", p}, {"max_tokens", 12}, {"temperature", 0}});
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    const json body = json::parse(r->body);
    EXPECT_EQ(body["object"], "text_completion");
    EXPECT_EQ(body["model"], "coder-dense");
    EXPECT_EQ(body["choices"][0]["text"], want.text);
    EXPECT_EQ(body["choices"][0]["finish_reason"], want.finish == FinishReason::stop ? "stop" : "length");
    EXPECT_EQ(body["usage"]["prompt_tokens"], ids.size());
    EXPECT_EQ(body["usage"]["completion_tokens"], want.tokens.size());
    EXPECT_EQ(body["usage"]["total_tokens"], ids.size() + want.tokens.size());
  }
  // A stop string cuts the text before it and finishes with "stop".
  ASSERT_GE(want.text.size(), 6u) << want.text;
  const std::string stop = want.text.substr(3, 2);
  auto r = post("/v1/completions", {{"prompt", prompt}, {"max_tokens", 12}, {"temperature", 0}, {"stop", {stop}}});
  ASSERT_TRUE(r);
  const json body = json::parse(r->body);
  EXPECT_EQ(body["choices"][0]["text"], want.text.substr(0, want.text.find(stop)));
  EXPECT_EQ(body["choices"][0]["finish_reason"], "stop");
}

TEST_F(ServerTest, ChatCompletionAndStreamAgree) {
  const json request = {{"messages", kChatMessages}, {"max_tokens", 10}, {"temperature", 0}, {"ignore_eos", true}};
  auto r = post("/v1/chat/completions", request);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const json body = json::parse(r->body);
  EXPECT_EQ(body["object"], "chat.completion");
  const json& choice = body["choices"][0];
  EXPECT_EQ(choice["message"]["role"], "assistant");
  const std::string text = choice["message"]["content"];
  EXPECT_FALSE(text.empty());
  EXPECT_EQ(choice["finish_reason"], "length");
  const std::string rendered = ChatTemplate::from_model_dir(test::model_dir("coder-dense")).apply(kChatMessages, true);
  const size_t prompt_tokens = model_->tokenizer().encode(rendered, false).size();
  EXPECT_EQ(body["usage"]["prompt_tokens"], prompt_tokens);
  EXPECT_EQ(body["usage"]["completion_tokens"], 10);
  EXPECT_EQ(body["usage"]["total_tokens"], prompt_tokens + 10);

  json streamed = request;
  streamed["stream"] = true;
  streamed["stream_options"] = {{"include_usage", true}};
  const auto events = stream_events("/v1/chat/completions", streamed);
  ASSERT_GE(events.size(), 5u);
  EXPECT_EQ(events.back(), "[DONE]");
  const json role = json::parse(events[0]);
  EXPECT_EQ(role["object"], "chat.completion.chunk");
  EXPECT_EQ(role["choices"][0]["delta"]["role"], "assistant");
  std::string concat;
  size_t i = 1;
  for (; i < events.size(); ++i) {
    const json chunk = json::parse(events[i]);
    const json& c = chunk["choices"][0];
    if (!c["finish_reason"].is_null()) break;
    ASSERT_TRUE(c["delta"].contains("content")) << events[i];
    concat += c["delta"]["content"].get<std::string>();
  }
  EXPECT_EQ(concat, text);
  ASSERT_LT(i + 2, events.size());
  EXPECT_EQ(json::parse(events[i])["choices"][0]["finish_reason"], "length");
  const json usage = json::parse(events[i + 1]);
  EXPECT_TRUE(usage["choices"].empty());
  EXPECT_EQ(usage["usage"], body["usage"]);
  EXPECT_EQ(i + 3, events.size());
}

TEST_F(ServerTest, MetricsCountRequestsAndTokens) {
  const double requests = metric("requests_total"), tokens = metric("tokens_generated_total"),
               prompt = metric("prompt_tokens_total");
  auto r =
      post("/v1/completions", {{"prompt", "import os\n"}, {"max_tokens", 4}, {"temperature", 0}, {"ignore_eos", true}});
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200);
  EXPECT_EQ(metric("requests_total"), requests + 1);
  EXPECT_EQ(metric("tokens_generated_total"), tokens + 4);
  EXPECT_GT(metric("prompt_tokens_total"), prompt);
  // The gauge drops when the server releases the finished response, just after its last byte reached the client.
  for (int i = 0; i < 200 && metric("requests_active") != 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(metric("requests_active"), 0);
  auto m = client().Get("/metrics");
  ASSERT_TRUE(m);
  for (const char* name :
       {"prompt_cache_hits_total", "prompt_cache_hit_tokens_total", "memory_active_bytes", "memory_peak_bytes",
        "kv_cache_bytes", "ssd_bytes_read_total", "ssd_reads_total", "ssd_read_seconds_total",
        "expert_cache_hits_total", "expert_cache_misses_total", "expert_cache_bytes"})
    EXPECT_NE(m->body.find(std::string("\nlmlab_") + name + " "), std::string::npos) << name;
  EXPECT_GT(metric("memory_peak_bytes"), 0);
}

TEST_F(ServerTest, ErrorsAreOpenAiBodies) {
  auto c = client();
  expect_error(c.Post("/v1/completions", "{not json", "application/json"), 400, "invalid_request_error", nullptr);
  expect_error(c.Post("/v1/completions", "[1,2]", "application/json"), 400, "invalid_request_error", nullptr);
  expect_error(post("/v1/completions", {{"max_tokens", 4}}), 400, "invalid_request_error", "prompt");
  expect_error(post("/v1/completions", {{"prompt", "x"}, {"temperature", "hot"}}), 400, "invalid_request_error",
               "temperature");
  expect_error(post("/v1/completions", {{"prompt", "x"}, {"max_tokens", 0}}), 400, "invalid_request_error",
               "max_tokens");
  expect_error(post("/v1/completions", {{"prompt", "x"}, {"stop", 3}}), 400, "invalid_request_error", "stop");
  expect_error(post("/v1/completions", {{"prompt", {1, 999999}}}), 400, "invalid_request_error", "prompt");
  expect_error(post("/v1/chat/completions", {{"messages", "hi"}}), 400, "invalid_request_error", "messages");
  expect_error(post("/v1/chat/completions", {{"messages", {{{"content", "no role"}}}}}), 400, "invalid_request_error",
               "messages");
  // A prompt longer than the context: 400 naming both sizes.
  const int64_t ctx = model_->info().ctx_size;
  auto r = post("/v1/completions", {{"prompt", std::vector<int>(static_cast<size_t>(ctx) + 5, 7)}});
  expect_error(r, 400, "invalid_request_error", "prompt");
  const std::string message = json::parse(r->body)["error"]["message"];
  EXPECT_NE(message.find(std::to_string(ctx + 5)), std::string::npos) << message;
  EXPECT_NE(message.find(std::to_string(ctx)), std::string::npos) << message;
  EXPECT_EQ(json::parse(r->body)["error"]["code"], "invalid_input");
  // Routing.
  expect_error(c.Get("/v1/nothing"), 404, "invalid_request_error", nullptr);
  auto wrong_method = c.Get("/v1/completions");
  expect_error(wrong_method, 405, "invalid_request_error", nullptr);
  EXPECT_EQ(wrong_method->get_header_value("Allow"), "POST");
  // The server still answers normally afterwards.
  auto ok = post("/v1/completions", {{"prompt", "x = "}, {"max_tokens", 2}});
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);
}

TEST_F(ServerTest, ApiKeyIsRequiredWhenSet) {
  ServerOptions o;
  o.port = 0;
  o.api_key = "sekrit";
  o.max_tokens = 2;
  Running keyed(model_, o);
  const int port = keyed.server->bound_port();
  auto c = client(port);
  auto h = c.Get("/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200) << "/health stays open";
  expect_error(c.Get("/v1/models"), 401, "invalid_request_error", nullptr);
  expect_error(c.Get("/v1/models", {{"Authorization", "Bearer wrong"}}), 401, "invalid_request_error", nullptr);
  auto ok = c.Get("/v1/models", {{"Authorization", "Bearer sekrit"}});
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);
}

TEST_F(ServerTest, ClientHangingUpMidStreamCancelsGeneration) {
  const double cancelled = metric("requests_cancelled_total"), tokens = metric("tokens_generated_total");
  constexpr int kMaxTokens = 4000;
  httplib::Request req;
  req.method = "POST";
  req.path = "/v1/completions";
  req.body =
      json({{"prompt", "class Stack:\n"}, {"max_tokens", kMaxTokens}, {"ignore_eos", true}, {"stream", true}}).dump();
  req.set_header("Content-Type", "application/json");
  int chunks = 0;
  req.content_receiver = [&](const char*, size_t, uint64_t, uint64_t) { return ++chunks < 3; };
  auto c = client();
  auto r = c.send(req);
  EXPECT_FALSE(r) << "the client cancelled the read";
  EXPECT_EQ(chunks, 3);
  // The server notices at its next writes, stops generating and frees the slot.
  wait_until_idle();
  EXPECT_EQ(metric("requests_active"), 0);
  EXPECT_EQ(metric("requests_cancelled_total"), cancelled + 1);
  EXPECT_LT(metric("tokens_generated_total") - tokens, kMaxTokens / 2) << "generation went on after the hang-up";
  auto ok = post("/v1/completions", {{"prompt", "x = "}, {"max_tokens", 2}});
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);
}

TEST_F(ServerTest, ClientHangingUpOnANonStreamedRequestCancelsGeneration) {
  const double cancelled = metric("requests_cancelled_total"), tokens = metric("tokens_generated_total");
  constexpr int kMaxTokens = 4000;
  auto c = client();
  c.set_read_timeout(0, 300000);  // gives up after 0.3 s and closes the connection
  auto r = c.Post("/v1/completions", json({{"prompt", "class Stack:\n"}, {"max_tokens", kMaxTokens},
                                           {"ignore_eos", true}}).dump(), "application/json");
  EXPECT_FALSE(r) << "the client timed out";
  // The server's next heartbeat write fails (within a second or two), it stops and frees the slot.
  wait_until_idle();
  EXPECT_EQ(metric("requests_active"), 0);
  EXPECT_EQ(metric("requests_cancelled_total"), cancelled + 1);
  EXPECT_LT(metric("tokens_generated_total") - tokens, kMaxTokens / 2) << "generation went on after the hang-up";
}

TEST_F(ServerTest, ConcurrentRequestsGetTheirOwnAnswers) {
  const std::vector<std::string> prompts = {"def add(a, b):\n", "import sys\n\nclass Parser:\n"};
  std::vector<std::string> want;
  for (const auto& p : prompts) want.push_back(reference(model_->tokenizer().encode(p, true), 10).text);
  std::vector<std::string> got(prompts.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < prompts.size(); ++i)
    threads.emplace_back([&, i] {
      auto r = post("/v1/completions", {{"prompt", prompts[i]}, {"max_tokens", 10}, {"temperature", 0}});
      if (r && r->status == 200) got[i] = json::parse(r->body)["choices"][0]["text"];
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(got, want);
}

}  // namespace
}  // namespace lmlab
