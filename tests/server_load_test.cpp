// Bounded load test of `lmlab serve` (issue 14, the CI variant): 64 concurrent streaming clients on a model
// this test writes, 8 at a time in the continuous batch, a quarter of them hanging up mid-stream. No 5xx,
// every stream that stayed ends with [DONE], lmlab_requests_active returns to 0, every KV block returns to the
// pool. Reports p50 / p99 of the inter-token gaps the clients saw (a figure to read, not a bound: timings vary
// with the machine).
#include <gtest/gtest.h>
#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <nlohmann/json.hpp>
#include <thread>

#include "lmlab/model.h"
#include "lmlab/server.h"
#include "tiny_model.h"

namespace lmlab {
namespace {

using Clock = std::chrono::steady_clock;

// It once failed under the full suite: 3-20 of the 48 clients that stay got httplib::Error::Read (the server
// dropped their connection unanswered). Cause: Debian's cpp-httplib listens with a compiled-in backlog of 5, so a
// 64-connection burst overflowed the accept queue; the server now widens the backlog (server.cpp).
TEST(ServerLoad, SixtyFourStreamsAQuarterHangingUp) {
  constexpr int kClients = 64, kTokens = 32;
  test::TinyModel tiny;
  auto model = Model::load(tiny.dir());
  ServerOptions o;
  o.port = 0;
  o.parallel = 8;  // the batch: 8 streams advance in each forward step, the rest queue
  o.queue = kClients;
  o.max_tokens = kTokens;
  Server server(model, o);
  std::thread listener([&] { server.listen(); });

  std::vector<int> status(kClients, 0);
  std::vector<bool> done(kClients, false);
  std::vector<std::vector<double>> gaps_ms(kClients);
  std::vector<std::thread> clients;
  for (int i = 0; i < kClients; ++i)
    clients.emplace_back([&, i] {
      const bool hang_up = i % 4 == 0;
      httplib::Client c("127.0.0.1", server.bound_port());
      c.set_read_timeout(120, 0);
      httplib::Request req;
      req.method = "POST";
      req.path = "/v1/completions";
      req.body = nlohmann::json({{"prompt", "def f" + std::to_string(i) + "():"},
                                 {"max_tokens", kTokens},
                                 {"ignore_eos", true},
                                 {"temperature", 0.7},
                                 {"seed", i},
                                 {"stream", true}})
                     .dump();
      req.set_header("Content-Type", "application/json");
      std::string raw;
      int chunks = 0;
      Clock::time_point last{};
      req.content_receiver = [&](const char* d, size_t n, uint64_t, uint64_t) {
        const auto now = Clock::now();
        if (chunks++ > 0) gaps_ms[i].push_back(std::chrono::duration<double, std::milli>(now - last).count());
        last = now;
        raw.append(d, n);
        return !(hang_up && chunks >= 4);
      };
      // Debian's cpp-httplib 0.11.4 listens with a backlog of 5 (compiled in): a burst of 64 connects can
      // overflow it, and the client then retries, as OpenAI's clients do on connection errors.
      auto r = c.send(req);
      for (int attempt = 0; attempt < 20 && !r && r.error() == httplib::Error::Connection && raw.empty(); ++attempt) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50 * (attempt + 1)));
        r = c.send(req);
      }
      if (!r && !(hang_up && chunks >= 4)) ADD_FAILURE() << "client " << i << ": " << httplib::to_string(r.error());
      if (r) status[i] = r->status;
      done[i] = raw.find("data: [DONE]") != std::string::npos;
    });
  for (auto& t : clients) t.join();

  int completed = 0;
  for (int i = 0; i < kClients; ++i) {
    EXPECT_LT(status[i], 500) << "client " << i;
    if (i % 4 != 0) {
      EXPECT_EQ(status[i], 200) << "client " << i;
      EXPECT_TRUE(done[i]) << "client " << i;
      completed += done[i];
    }
  }
  EXPECT_EQ(completed, kClients * 3 / 4);

  // The hung-up generations notice at their next write; then nothing is active and no KV block is held.
  auto active = [&] {
    httplib::Client c("127.0.0.1", server.bound_port());
    auto r = c.Get("/metrics");
    const std::string key = "\nlmlab_requests_active ";
    const size_t at = r ? r->body.find(key) : std::string::npos;
    return at == std::string::npos ? -1.0 : std::stod(r->body.substr(at + key.size()));
  };
  const auto deadline = Clock::now() + std::chrono::seconds(30);
  while (active() != 0 && Clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(active(), 0);
  server.stop();
  listener.join();
  EXPECT_EQ(model->counters().kv_cache_bytes, 0u) << "KV blocks leaked";

  std::vector<double> all;
  for (const auto& g : gaps_ms) all.insert(all.end(), g.begin(), g.end());
  ASSERT_FALSE(all.empty());
  std::sort(all.begin(), all.end());
  auto pct = [&](double p) { return all[std::min(all.size() - 1, static_cast<size_t>(p * all.size()))]; };
  std::printf("[          ] %d clients (%d hung up), %zu inter-token gaps: p50 %.2f ms, p99 %.2f ms\n", kClients,
              kClients / 4, all.size(), pct(0.50), pct(0.99));
  ::testing::Test::RecordProperty("inter_token_p50_ms", std::to_string(pct(0.50)));
  ::testing::Test::RecordProperty("inter_token_p99_ms", std::to_string(pct(0.99)));
}

}  // namespace
}  // namespace lmlab
