// `lmlab serve` with continuous batching, over HTTP: concurrent streamed and whole greedy requests (more than
// --parallel, so some join a batch already decoding; prompts longer than --prefill-size) answer exactly what
// generate() gives each alone, while one client hangs up mid-stream; afterwards nothing is active and every KV
// block is back. On a fixture (coder-dense) and on a model made by the test.
#include <gtest/gtest.h>
#include <httplib.h>

#include <nlohmann/json.hpp>
#include <thread>

#include "fixtures.h"
#include "lmlab/generate.h"
#include "lmlab/model.h"
#include "lmlab/server.h"
#include "tiny_model.h"

namespace lmlab {
namespace {

using nlohmann::json;

// The concatenated `text` of a completion stream's chunks; stops reading after `hang_up_after` chunks (-1: never).
std::string stream_text(int port, const json& body, int hang_up_after) {
  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(120, 0);
  std::string raw, text;
  int chunks = 0;
  httplib::Request req;
  req.method = "POST";
  req.path = "/v1/completions";
  req.body = body.dump();
  req.set_header("Content-Type", "application/json");
  req.content_receiver = [&](const char* data, size_t len, uint64_t, uint64_t) {
    raw.append(data, len);
    for (size_t end; (end = raw.find("\n\n")) != std::string::npos; raw.erase(0, end + 2)) {
      const std::string event = raw.substr(0, end);
      if (event.rfind("data: {", 0) != 0) continue;
      const json j = json::parse(event.substr(6));
      if (!j["choices"].empty()) text += j["choices"][0]["text"].get<std::string>();
      if (++chunks == hang_up_after) return false;
    }
    return true;
  };
  c.send(req);
  return text;
}

void expect_concurrent_requests_answer_as_alone(const std::shared_ptr<Model>& model) {
  ServerOptions o;
  o.port = 0;
  o.parallel = 3;
  o.queue = 8;
  o.max_tokens = 64;
  Server server(model, o);
  std::thread listener([&] { server.listen(); });

  std::string long_prompt;
  for (int i = 0; i < 12; ++i) long_prompt += "def f" + std::to_string(i) + "(x):\n    return x\n";
  const std::vector<std::string> prompts = {"import os\n", long_prompt, "class A:\n", "x = 1\n", long_prompt + "y", "#"};
  const std::vector<int> max_tokens = {12, 20, 5, 16, 9, 14};
  const int hang_up = 3;  // this client leaves after two chunks
  std::vector<std::string> got(prompts.size()), want(prompts.size());
  std::vector<std::thread> clients;
  for (size_t i = 0; i < prompts.size(); ++i) {
    SamplingParams sp;
    sp.max_tokens = max_tokens[i];
    sp.stop_at_eos = false;
    want[i] = generate(*model->new_session(), model->tokenizer().encode(prompts[i], true), sp).text;
    const json body = {{"prompt", prompts[i]}, {"max_tokens", max_tokens[i]}, {"temperature", 0},
                       {"ignore_eos", true}, {"stream", i % 2 == 0}};
    clients.emplace_back([&, i, body] {
      if (body["stream"]) {
        got[i] = stream_text(server.bound_port(), body, static_cast<int>(i) == hang_up ? 2 : -1);
        return;
      }
      httplib::Client c("127.0.0.1", server.bound_port());
      c.set_read_timeout(120, 0);
      auto r = c.Post("/v1/completions", body.dump(), "application/json");
      if (r && r->status == 200) got[i] = json::parse(r->body)["choices"][0]["text"];
    });
  }
  for (auto& t : clients) t.join();
  for (size_t i = 0; i < prompts.size(); ++i) {
    SCOPED_TRACE("request " + std::to_string(i));
    if (static_cast<int>(i) == hang_up) EXPECT_EQ(want[i].rfind(got[i], 0), 0u) << "a prefix of its answer";
    else EXPECT_EQ(got[i], want[i]);
  }
  server.stop();
  listener.join();
  EXPECT_EQ(model->counters().kv_cache_bytes, 0u) << "every sequence returned its KV blocks";
}

TEST(ServerBatching, ConcurrentGreedyRequestsAnswerAsEachAloneOnAFixture) {
  ModelOptions mo;
  mo.prefill_size = 32;  // the long prompts are prefilled in chunks between the others' decode steps
  expect_concurrent_requests_answer_as_alone(Model::load(test::model_dir("coder-dense"), mo));
}

TEST(ServerBatching, ConcurrentGreedyRequestsAnswerAsEachAloneOnAModelMadeHere) {
  test::TinyModel tiny;
  ModelOptions mo;
  mo.prefill_size = 32;
  expect_concurrent_requests_answer_as_alone(Model::load(tiny.dir(), mo));
}

}  // namespace
}  // namespace lmlab
