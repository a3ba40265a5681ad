// Backpressure and limits of `lmlab serve` (issue 14), on a model this test writes: a full queue answers 429
// with Retry-After, an oversized body 413, --max-tokens caps what a request asks for, a stopping server
// answers 503 and cancels what runs past --shutdown-timeout; and the real process exits 0 on SIGTERM while a
// generation streams.
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <future>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <thread>

#include "lmlab/model.h"
#include "lmlab/server.h"
#include "tiny_model.h"

extern char** environ;

namespace lmlab {
namespace {

using nlohmann::json;

struct Running {
  Server server;
  std::thread thread;
  Running(std::shared_ptr<Model> m, ServerOptions o) : server(std::move(m), o) {
    thread = std::thread([this] { server.listen(); });
  }
  ~Running() {
    server.stop();
    thread.join();
  }
  httplib::Client client() {
    httplib::Client c("127.0.0.1", server.bound_port());
    c.set_read_timeout(120, 0);
    return c;
  }
};

class ServerLimits : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    tiny_ = new test::TinyModel();
    model_ = Model::load(tiny_->dir());
  }
  static void TearDownTestSuite() {
    model_.reset();
    delete tiny_;
  }
  static ServerOptions options() {
    ServerOptions o;
    o.port = 0;
    o.max_tokens = 400;
    return o;
  }
  static inline test::TinyModel* tiny_ = nullptr;
  static inline std::shared_ptr<Model> model_;
};

const std::string kLong = json({{"prompt", "def f():"}, {"max_tokens", 400}, {"ignore_eos", true}}).dump();

TEST_F(ServerLimits, AFullQueueAnswers429WithRetryAfter) {
  ServerOptions o = options();
  o.parallel = 1;
  o.queue = 0;
  Running r(model_, o);
  std::vector<int> status(6, 0);
  std::vector<std::string> retry(6), type(6);
  std::vector<std::thread> clients;
  for (size_t i = 0; i < status.size(); ++i)
    clients.emplace_back([&, i] {
      auto res = r.client().Post("/v1/completions", kLong, "application/json");
      if (!res) return;
      status[i] = res->status;
      retry[i] = res->get_header_value("Retry-After");
      if (res->status != 200) type[i] = json::parse(res->body)["error"]["type"];
    });
  for (auto& t : clients) t.join();
  int ok = 0, busy = 0;
  for (size_t i = 0; i < status.size(); ++i) {
    if (status[i] == 200) ++ok;
    if (status[i] == 429) {
      ++busy;
      EXPECT_EQ(retry[i], "1");
      EXPECT_EQ(type[i], "rate_limit_error");
    }
    EXPECT_TRUE(status[i] == 200 || status[i] == 429) << status[i];
  }
  EXPECT_GE(ok, 1);
  EXPECT_GE(busy, 1) << "6 simultaneous 400-token requests with one slot and no queue";
}

TEST_F(ServerLimits, AnOversizedBodyIs413) {
  ServerOptions o = options();
  o.max_body_bytes = 64 << 10;
  Running r(model_, o);
  const std::string big = json({{"prompt", std::string(100 << 10, 'x')}, {"max_tokens", 1}}).dump();
  auto res = r.client().Post("/v1/completions", big, "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 413);
  EXPECT_EQ(json::parse(res->body)["error"]["code"], "body_too_large") << res->body;
  auto small = r.client().Post("/v1/completions", R"({"prompt":"x","max_tokens":1})", "application/json");
  ASSERT_TRUE(small);
  EXPECT_EQ(small->status, 200);
}

// A prompt longer than the context is refused naming the field and the context size; the text is encoded only
// up to the context (Tokenizer::encode_at_most), so a body of megabytes costs no more than one of ctx_size tokens.
TEST_F(ServerLimits, APromptLongerThanTheContextIs400) {
  Running r(model_, options());
  const int64_t ctx = model_->info().ctx_size;
  std::string text;
  while (static_cast<int64_t>(text.size()) < 2 << 20) text += "def f(x):\n    return x + 1\n";
  for (const char* path : {"/v1/completions", "/v1/chat/completions"}) {
    const bool chat = std::string(path) == "/v1/chat/completions";
    const json body = chat ? json({{"messages", {{{"role", "user"}, {"content", text}}}}, {"max_tokens", 1}})
                           : json({{"prompt", text}, {"max_tokens", 1}});
    auto res = r.client().Post(path, body.dump(), "application/json");
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 400) << path;
    const json err = json::parse(res->body)["error"];
    EXPECT_EQ(err["param"], chat ? "messages" : "prompt") << res->body;
    EXPECT_NE(err["message"].get<std::string>().find("more than " + std::to_string(ctx) + " tokens"),
              std::string::npos)
        << res->body;
  }
  auto ok = r.client().Post("/v1/completions", R"({"prompt":"x","max_tokens":1})", "application/json");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);
}

// The loader constructor binds at once and loads meanwhile: /health says "loading" with 503, generations get 503
// with Retry-After, /metrics answers; once the model is there everything serves. A load that fails stops the
// server with the reason.
TEST_F(ServerLimits, WhileTheModelLoadsRequestsGet503) {
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::atomic<bool> ready_called{false};
  Server server([&] {
    released.wait();
    return model_;
  }, options(), [&](const Server&) { ready_called = true; });
  std::thread t([&] { server.listen(); });
  httplib::Client c("127.0.0.1", server.bound_port());
  c.set_read_timeout(60, 0);
  EXPECT_FALSE(server.ready());
  auto health = c.Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 503);
  EXPECT_EQ(json::parse(health->body)["status"], "loading");
  auto gen = c.Post("/v1/completions", R"({"prompt":"x","max_tokens":1})", "application/json");
  ASSERT_TRUE(gen);
  EXPECT_EQ(gen->status, 503);
  EXPECT_EQ(json::parse(gen->body)["error"]["code"], "model_loading") << gen->body;
  EXPECT_EQ(gen->get_header_value("Retry-After"), "1");
  auto models = c.Get("/v1/models");
  ASSERT_TRUE(models);
  EXPECT_EQ(models->status, 503);
  auto metrics = c.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_EQ(metrics->status, 200);

  release.set_value();
  for (int i = 0; i < 5000 && !ready_called; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  ASSERT_TRUE(ready_called);
  EXPECT_TRUE(server.ready());
  health = c.Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  gen = c.Post("/v1/completions", R"({"prompt":"x","max_tokens":1})", "application/json");
  ASSERT_TRUE(gen);
  EXPECT_EQ(gen->status, 200) << gen->body;
  server.stop();
  t.join();
  EXPECT_EQ(server.load_error(), "");
}

TEST_F(ServerLimits, AFailedLoadStopsTheServerWithTheReason) {
  Server server([]() -> std::shared_ptr<Model> { return Model::load("/nonexistent/model"); }, options());
  std::thread t([&] { server.listen(); });
  t.join();  // listen() returns: the loader stopped the server
  EXPECT_FALSE(server.ready());
  EXPECT_NE(server.load_error().find("/nonexistent/model"), std::string::npos) << server.load_error();
}

TEST_F(ServerLimits, MaxTokensCapsEveryRequest) {
  ServerOptions o = options();
  o.max_tokens = 3;
  Running r(model_, o);
  auto res = r.client().Post("/v1/completions", kLong, "application/json");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  EXPECT_EQ(json::parse(res->body)["usage"]["completion_tokens"], 3);
}

// Streams a 500-token completion from 127.0.0.1:port into `raw` on a new thread; returns once the first bytes
// arrived (`raw` belongs to the thread until it is joined).
std::thread stream_until_started(int port, std::string& raw) {
  auto started = std::make_shared<std::atomic<bool>>(false);
  std::thread t([port, &raw, started] {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(120, 0);
    httplib::Request req;
    req.method = "POST";
    req.path = "/v1/completions";
    req.body = json({{"prompt", "def f():"}, {"max_tokens", 500}, {"ignore_eos", true}, {"stream", true}}).dump();
    req.set_header("Content-Type", "application/json");
    req.content_receiver = [&](const char* d, size_t n, uint64_t, uint64_t) {
      raw.append(d, n);
      *started = true;
      return true;
    };
    c.send(req);
    *started = true;  // also when the request failed: the caller's checks then say so
  });
  while (!*started) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  return t;
}

TEST_F(ServerLimits, StoppingAnswers503AndCancelsPastTheTimeout) {
  ServerOptions o = options();
  o.shutdown_timeout_s = 0;
  o.max_tokens = 500;
  auto r = std::make_unique<Running>(model_, o);
  const int port = r->server.bound_port();
  // A stream that reads its first chunk, then lets the server stop under it.
  std::string raw;
  std::thread streamer = stream_until_started(port, raw);
  const auto t0 = std::chrono::steady_clock::now();
  std::thread stopper([&] { r->server.stop(); });
  stopper.join();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(20));
  streamer.join();
  r->thread.join();
  r->thread = std::thread([] {});  // ~Running joins it again
  EXPECT_NE(raw.find("shutting_down"), std::string::npos) << raw.substr(raw.size() > 400 ? raw.size() - 400 : 0);
  EXPECT_NE(raw.find("data: [DONE]"), std::string::npos);
}

// The real executable: SIGTERM while a generation streams ends the process with status 0.
TEST_F(ServerLimits, SigtermEndsTheProcessWithStatusZero) {
  const std::string log = ::testing::TempDir() + "lmlab_sigterm_" + std::to_string(::getpid()) + ".log";
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 2, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  const std::string dir = tiny_->dir().string();
  std::vector<std::string> args = {LMLAB_CLI_PATH, "serve", "--model", dir, "--port", "0", "--max-tokens", "500",
                                   "--shutdown-timeout", "1", "--threads", "1"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  ASSERT_EQ(posix_spawn(&pid, LMLAB_CLI_PATH, &fa, nullptr, argv.data(), environ), 0);
  posix_spawn_file_actions_destroy(&fa);
  int port = 0;
  const std::regex listening("serving on http://[^:]+:([0-9]+)");
  for (int i = 0; i < 3000 && !port; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    std::ifstream in(log);
    std::stringstream text;
    text << in.rdbuf();
    std::smatch m;
    const std::string s = text.str();
    if (std::regex_search(s, m, listening)) port = std::stoi(m[1]);
  }
  ASSERT_GT(port, 0) << "the server did not start";
  std::string raw;
  std::thread streamer = stream_until_started(port, raw);
  ASSERT_EQ(::kill(pid, SIGTERM), 0);
  int status = -1;
  for (int i = 0; i < 3000; ++i) {  // 30 s
    if (::waitpid(pid, &status, WNOHANG) == pid) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  streamer.join();
  if (!WIFEXITED(status)) ::kill(pid, SIGKILL), ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status)) << "still running 30 s after SIGTERM";
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_NE(raw.find("data: [DONE]"), std::string::npos) << "the stream was ended, finished or cancelled";
  std::remove(log.c_str());
}

}  // namespace
}  // namespace lmlab
