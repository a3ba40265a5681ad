// Logprobs are the log-softmax of the model's raw logits (before temperature and filtering), as OpenAI defines
// them: generate()'s per-token logprobs against a Session's logits, and the server's chat and completions
// logprobs shapes, streamed and not, against in-process generation.
#include <gtest/gtest.h>
#include <httplib.h>

#include <cmath>
#include <memory>
#include <nlohmann/json.hpp>
#include <numeric>
#include <thread>
#include <vector>

#include "fixtures.h"
#include "lmlab/generate.h"
#include "lmlab/model.h"
#include "lmlab/server.h"

namespace lmlab {
namespace {

using nlohmann::json;

std::vector<double> log_softmax(std::span<const float> logits) {
  double m = logits[0];
  for (float l : logits) m = std::max(m, static_cast<double>(l));
  double s = 0.0;
  for (float l : logits) s += std::exp(l - m);
  std::vector<double> out(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) out[i] = logits[i] - m - std::log(s);
  return out;
}

// Each generated token's logprobs equal the log-softmax of the logits a Session gives at its position.
void expect_logprobs_match_session(const Model& model, const SamplingParams& sp) {
  const std::vector<int32_t> prompt = model.tokenizer().encode("def add(a, b):\n", true);
  std::vector<TokenEvent> events;
  auto gen_session = model.new_session();
  generate(*gen_session, prompt, sp, [&](const TokenEvent& ev) {
    events.push_back(ev);
    return true;
  });
  ASSERT_EQ(static_cast<int64_t>(events.size()), sp.max_tokens);
  auto session = model.new_session();
  std::vector<float> logits;
  {
    auto l = session->append(prompt);
    logits.assign(l.begin(), l.end());
  }
  for (const TokenEvent& ev : events) {
    ASSERT_TRUE(ev.logprobs.has_value());
    const std::vector<double> want = log_softmax(logits);
    EXPECT_NEAR(ev.logprobs->logprob, want[ev.id], 1e-4) << "token " << ev.index;
    ASSERT_EQ(static_cast<int>(ev.logprobs->top.size()), sp.logprobs);
    std::vector<int32_t> order(want.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
    for (int k = 0; k < sp.logprobs; ++k) {
      EXPECT_EQ(ev.logprobs->top[k].id, order[k]);
      EXPECT_NEAR(ev.logprobs->top[k].logprob, want[order[k]], 1e-4);
    }
    if (sp.temperature == 0.0f) EXPECT_EQ(ev.id, ev.logprobs->top[0].id);  // greedy picks the most likely
    auto l = session->append(std::span<const int32_t>(&ev.id, 1));
    logits.assign(l.begin(), l.end());
  }
}

TEST(Logprobs, GreedyTokensLogprobsAreLogSoftmaxOfSessionLogits) {
  auto model = Model::load(test::model_dir("coder-dense"));
  SamplingParams sp;
  sp.max_tokens = 8;
  sp.stop_at_eos = false;
  sp.logprobs = 5;
  expect_logprobs_match_session(*model, sp);
}

TEST(Logprobs, SampledTokensLogprobsIgnoreTemperature) {
  auto model = Model::load(test::model_dir("coder-dense"));
  SamplingParams sp;
  sp.max_tokens = 8;
  sp.stop_at_eos = false;
  sp.logprobs = 3;
  sp.temperature = 1.7f;
  sp.top_p = 0.9f;
  sp.seed = 99;
  expect_logprobs_match_session(*model, sp);
}

TEST(Logprobs, OffByDefault) {
  auto model = Model::load(test::model_dir("coder-dense"));
  SamplingParams sp;
  sp.max_tokens = 2;
  auto session = model->new_session();
  generate(*session, model->tokenizer().encode("x", true), sp, [](const TokenEvent& ev) {
    EXPECT_FALSE(ev.logprobs.has_value());
    return true;
  });
}

class LogprobsServer : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    model_ = Model::load(test::model_dir("coder-dense"));
    ServerOptions o;
    o.port = 0;
    o.max_tokens = 64;
    server_ = new Server(model_, o);
    thread_ = new std::thread([] { server_->listen(); });
  }
  static void TearDownTestSuite() {
    server_->stop();
    thread_->join();
    delete thread_;
    delete server_;
    model_.reset();
  }
  static std::string post(const std::string& path, const json& body) {
    httplib::Client c("127.0.0.1", server_->bound_port());
    c.set_read_timeout(60, 0);
    auto r = c.Post(path, body.dump(), "application/json");
    EXPECT_TRUE(r);
    if (!r) return "{}";
    EXPECT_EQ(r->status, 200) << r->body;
    return r->body;
  }
  static std::vector<json> stream(const std::string& path, json body) {
    body["stream"] = true;
    const std::string raw = post(path, body);
    std::vector<json> out;
    size_t pos = 0;
    for (size_t end; (end = raw.find("\n\n", pos)) != std::string::npos; pos = end + 2) {
      const std::string data = raw.substr(pos + 6, end - pos - 6);
      if (data != "[DONE]") out.push_back(json::parse(data));
    }
    return out;
  }
  // In-process greedy generation of `prompt` with logprobs.
  static std::vector<TokenEvent> reference(const std::vector<int32_t>& prompt, int64_t n, int top) {
    SamplingParams sp;
    sp.max_tokens = n;
    sp.stop_at_eos = false;
    sp.logprobs = top;
    std::vector<TokenEvent> events;
    auto session = model_->new_session();
    generate(*session, prompt, sp, [&](const TokenEvent& ev) {
      events.push_back(ev);
      return true;
    });
    return events;
  }
  static inline std::shared_ptr<Model> model_;
  static inline Server* server_ = nullptr;
  static inline std::thread* thread_ = nullptr;
};

TEST_F(LogprobsServer, CompletionsLogprobsWholeAndStreamed) {
  const std::string prompt = "def fibonacci(n):\n";
  const auto want = reference(model_->tokenizer().encode(prompt, true), 6, 2);
  const json request = {{"prompt", prompt}, {"max_tokens", 6}, {"temperature", 0}, {"ignore_eos", true}, {"logprobs", 2}};
  const json body = json::parse(post("/v1/completions", request));
  const json& lp = body["choices"][0]["logprobs"];
  ASSERT_EQ(lp["tokens"].size(), 6u) << body.dump();
  ASSERT_EQ(lp["token_logprobs"].size(), 6u);
  ASSERT_EQ(lp["top_logprobs"].size(), 6u);
  ASSERT_EQ(lp["text_offset"].size(), 6u);
  EXPECT_EQ(lp["text_offset"][0], 0);
  for (size_t i = 0; i < 6; ++i) {
    EXPECT_NEAR(lp["token_logprobs"][i].get<double>(), want[i].logprobs->logprob, 1e-6);
    EXPECT_EQ(lp["tokens"][i], model_->tokenizer().decode(std::span<const int32_t>(&want[i].id, 1)));
    EXPECT_LE(lp["top_logprobs"][i].size(), 2u);
    EXPECT_GE(lp["top_logprobs"][i].size(), 1u);
    if (i > 0) EXPECT_GE(lp["text_offset"][i].get<int64_t>(), lp["text_offset"][i - 1].get<int64_t>());
  }
  // Streamed: the chunks' logprobs concatenate to the same tokens.
  std::vector<double> streamed;
  for (const json& ev : stream("/v1/completions", request)) {
    const json& l = ev["choices"][0]["logprobs"];
    if (l.is_null()) continue;
    for (const auto& x : l["token_logprobs"]) streamed.push_back(x.get<double>());
  }
  ASSERT_EQ(streamed.size(), 6u);
  for (size_t i = 0; i < 6; ++i) EXPECT_NEAR(streamed[i], want[i].logprobs->logprob, 1e-6);
}

TEST_F(LogprobsServer, ChatLogprobsWholeAndStreamed) {
  const json request = {{"messages", {{{"role", "user"}, {"content", "Write a sort function."}}}},
                        {"max_tokens", 5},
                        {"temperature", 0},
                        {"ignore_eos", true},
                        {"logprobs", true},
                        {"top_logprobs", 3}};
  const json body = json::parse(post("/v1/chat/completions", request));
  const json& content = body["choices"][0]["logprobs"]["content"];
  ASSERT_EQ(content.size(), 5u) << body.dump();
  for (const json& e : content) {
    ASSERT_TRUE(e["token"].is_string());
    ASSERT_TRUE(e["logprob"].is_number());
    EXPECT_LE(e["logprob"].get<double>(), 0.0);
    const std::string tok = e["token"];
    ASSERT_EQ(e["bytes"].size(), tok.size());
    ASSERT_EQ(e["top_logprobs"].size(), 3u);
    EXPECT_NEAR(e["top_logprobs"][0]["logprob"].get<double>(), e["logprob"].get<double>(), 1e-6);  // greedy
    EXPECT_GE(e["top_logprobs"][0]["logprob"].get<double>(), e["top_logprobs"][2]["logprob"].get<double>());
  }
  std::vector<json> streamed;
  for (const json& ev : stream("/v1/chat/completions", request)) {
    if (ev["choices"].empty() || !ev["choices"][0].contains("logprobs")) continue;
    for (const auto& e : ev["choices"][0]["logprobs"]["content"]) streamed.push_back(e);
  }
  ASSERT_EQ(streamed.size(), 5u);
  for (size_t i = 0; i < 5; ++i) {
    EXPECT_EQ(streamed[i]["token"], content[i]["token"]);
    EXPECT_NEAR(streamed[i]["logprob"].get<double>(), content[i]["logprob"].get<double>(), 1e-6);
  }
  // Without logprobs the chat choice says null.
  json plain = request;
  plain.erase("logprobs");
  plain.erase("top_logprobs");
  EXPECT_TRUE(json::parse(post("/v1/chat/completions", plain))["choices"][0]["logprobs"].is_null());
}

}  // namespace
}  // namespace lmlab
