// lmlab regression against real processes and real SQLite files: it passes on a fresh `lmlab serve` and stores
// every check; it fails, naming the failing step, against a server without a prompt cache, a server killed
// mid-sequence, and a reference answer altered.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <nlohmann/json.hpp>
#include <thread>

#include "cli_run.h"
#include "fixtures.h"
#include "http_client.h"
#include "lmlab/regression.h"
#include "lmlab/results.h"
#include "prometheus_text.h"
#include "serve_process.h"

namespace lmlab {
namespace {

namespace fs = std::filesystem;
using test::run_lmlab;

const std::string kScenario = std::string(LMLAB_SOURCE_DIR) + "/scenarios/regression.json";

class RegressionCli : public test::TempDirTest {
 protected:
  std::string args(const std::string& extra) const { return "regression " + kScenario + " --db " + db() + " " + extra; }

  // The server flags of the scenario, for servers a test starts itself.
  static std::vector<std::string> server_flags(int64_t prompt_cache_mb) {
    return {"--ctx-size", "8192", "--prefill-size", "512", "--prompt-cache-mb", std::to_string(prompt_cache_mb),
            "--kv-budget-mb", "1024", "--parallel", "4"};
  }
  std::vector<RegressionCheck> stored_checks() const {
    ResultsStore store = ResultsStore::open_existing(db());
    const auto run = store.latest_regression_run();
    return run ? store.regression_checks(*run) : std::vector<RegressionCheck>{};
  }
};

TEST_F(RegressionCli, PassesOnAFreshServerAndStoresEveryCheck) {
  const auto r = run_lmlab(args("--work-dir " + (dir_ / "work").string()));
  ASSERT_EQ(r.rc, 0) << r.output;
  const auto checks = stored_checks();
  // Per model: 4 steps x (status, answer, completion_tokens, hits, hit tokens) + the concurrent phase (4 x 3
  // answer checks, overlap, hits, hit tokens) + 4 budgets.
  ASSERT_EQ(checks.size(), 2u * (4 * 5 + 4 * 3 + 3 + 4)) << r.output;
  for (const auto& c : checks) EXPECT_TRUE(c.pass) << c.model << " " << c.step << " " << c.check << ": " << c.got;
  auto find = [&](const std::string& model, const std::string& step, const std::string& check) {
    for (const auto& c : checks)
      if (c.model == model && c.step == step && c.check == check) return c;
    ADD_FAILURE() << "no check " << model << " / " << step << " / " << check;
    return RegressionCheck{};
  };
  // The expectations come from the block size (32) and the prompt lengths, not from an earlier run.
  EXPECT_EQ(find("gemma3", "4 long again", "prompt_cache_hit_tokens").expected, "5280");  // (5300 - 1) / 32 * 32
  EXPECT_EQ(find("gemma3", "3 long (shares a prefix)", "prompt_cache_hits").expected, "0");  // windows released
  EXPECT_EQ(find("gemma3-synth-w500", "5 concurrent", "prompt_cache_hit_tokens").expected, "15744");  // 5184 + 2 x 5280
  EXPECT_TRUE(find("gemma3", "5 concurrent", "overlap").pass);

  ResultsStore store = ResultsStore::open_existing(db());
  EXPECT_EQ(store.runs().back().state, "complete");
  EXPECT_EQ(store.samples(store.runs().back().id).size(), 2u * 8);  // one sample per request
  const auto md = run_lmlab("report --db " + db() + " --format md");
  EXPECT_NE(md.output.find("## Regression suite: passed (78 checks)"), std::string::npos) << md.output;
}

TEST_F(RegressionCli, FailsNamingTheStepWhenTheServerHasNoPromptCache) {
  harness_detail::ServeProcess server(LMLAB_CLI_PATH, test::model_dir("gemma3"), server_flags(0));
  const auto r = run_lmlab(args("--models gemma3 --url " + server.target().url()));
  EXPECT_EQ(r.rc, 1) << r.output;
  EXPECT_NE(r.output.find("FAILED gemma3 step 4 long again: prompt_cache_hits expected 1, got 0"), std::string::npos)
      << r.output;
  // The answers are still right: only the cache checks fail.
  for (const auto& c : stored_checks())
    if (c.check == "answer") {
      EXPECT_TRUE(c.pass) << c.step;
    }
}

TEST_F(RegressionCli, FailsNamingTheStepWhenTheServerIsKilledMidSequence) {
  harness_detail::ServeProcess server(LMLAB_CLI_PATH, test::model_dir("gemma3"), server_flags(256));
  auto suite = std::async(std::launch::async, [&] { return run_lmlab(args("--models gemma3 --url " + server.target().url())); });
  // Kill the server once the sequence has reached it (the references come from another, cold server first).
  bool killed = false;
  for (int i = 0; i < 1200 && !killed; ++i) {
    if (const auto body = harness_detail::http_get(server.target(), "/metrics")) {
      const auto m = harness_detail::PrometheusText::parse(*body);
      if (m.value("lmlab_requests_total").value_or(0) >= 1) {
        ::kill(server.pid(), SIGKILL);
        killed = true;
      }
    }
    if (!killed) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_TRUE(killed) << "the suite never reached the server";
  const auto r = suite.get();
  EXPECT_EQ(r.rc, 1) << r.output;
  EXPECT_TRUE(r.output.find("FAILED gemma3 step 1 long: status") != std::string::npos ||
              r.output.find("FAILED gemma3 step 2 short: status") != std::string::npos)
      << r.output;
  ResultsStore store = ResultsStore::open_existing(db());
  EXPECT_EQ(store.runs().back().state, "complete");  // the suite itself finished: the failures are its result
}

TEST_F(RegressionCli, FailsNamingTheStepWhenAReferenceAnswerIsAltered) {
  const std::string refs = (dir_ / "refs.json").string();
  const auto first = run_lmlab(args("--models gemma3 --save-references " + refs));
  ASSERT_EQ(first.rc, 0) << first.output;
  nlohmann::json j;
  std::ifstream(refs) >> j;
  ASSERT_TRUE(j["gemma3"]["short"]["text"].is_string());
  j["gemma3"]["short"]["text"] = j["gemma3"]["short"]["text"].get<std::string>() + " (altered)";
  std::ofstream(refs) << j.dump();
  const auto r = run_lmlab(args("--models gemma3 --references " + refs));
  EXPECT_EQ(r.rc, 1) << r.output;
  EXPECT_NE(r.output.find("FAILED gemma3 step 2 short: answer expected"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("FAILED gemma3 step 5 concurrent: 2 short: answer"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("FAILED gemma3 step 1 long"), std::string::npos) << r.output;
}

TEST_F(RegressionCli, RefusesBadInputNamingIt) {
  EXPECT_NE(run_lmlab(args("--models nope")).output.find("--models"), std::string::npos);
  EXPECT_NE(run_lmlab(args("--models gemma3 --url ftp://x")).output.find("not an http:// URL"), std::string::npos);
  const fs::path bad = dir_ / "bad.json";
  std::ofstream(bad) << R"({"name": "r", "models": [{"name": "m", "model": "x"}], "long_tokens": 100})";
  const auto r = run_lmlab("regression " + bad.string() + " --db " + db());
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.output.find("field 'long_tokens'"), std::string::npos) << r.output;
}

// A number past a double's range is nlohmann's out_of_range, not a parse_error: it must still be lmlab's own error.
TEST(RegressionScenario, ANumberPastADoubleIsInvalidJsonNamingTheFile) {
  try {
    parse_regression_scenario(R"({"name": "r", "models": [], "seed": 1e999})", "/tmp/big.json");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/tmp/big.json: not valid JSON: "), std::string::npos) << e.what();
  }
}

// A prompt length near INT64_MAX once overflowed the sum checked against ctx_size (undefined behaviour; in practice
// it wrapped negative and the scenario was accepted). Found by regression_scenario_fuzz_test.cpp.
TEST(RegressionScenario, APromptLengthNearInt64MaxIsRefusedByTheContextCheck) {
  for (const char* key : {"long_tokens", "second_long_tokens"}) {
    const std::string text =
        R"({"name": "r", "models": [{"name": "m", "model": "x"}], ")" + std::string(key) + R"(": 9223372036854775807})";
    try {
      parse_regression_scenario(text, "/tmp/r.json");
      FAIL() << "no error for " << key;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("/tmp/r.json: field 'server.ctx_size'"), std::string::npos) << e.what();
    }
  }
}

TEST(RegressionScenario, AParallelPastTheServersRangeIsRefusedNotNarrowed) {
  // 4294967300 narrowed to int is 4, which would pass the "at least 4" check and start a server with 4 slots.
  for (const char* parallel : {"4294967300", "1025"}) {
    const std::string text =
        R"({"name": "r", "models": [{"name": "m", "model": "x"}], "server": {"parallel": )" + std::string(parallel) + "}}";
    try {
      parse_regression_scenario(text, "/tmp/r.json");
      FAIL() << "no error for parallel " << parallel;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("/tmp/r.json: field 'server.parallel': must be at most 1024"), std::string::npos)
          << e.what();
    }
  }
}

}  // namespace
}  // namespace lmlab
