// Regression scenario files are outside input (written by hand, passed to `lmlab regression`): seeded mutations of
// valid ones (byte flips, truncations, spliced JSON fragments; and, past the JSON layer, values replaced, keys dropped
// or renamed) must either parse into a scenario whose relations hold or throw lmlab::Error naming the file; never
// another exception or a crash. The seeds are scenarios/regression.json itself and two written here that cover the
// keys it leaves out. (STYLE.md: a fuzz target beside every parser of outside input; the runner is in
// regression_test.cpp.)
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <set>
#include <string>
#include <vector>

#include "lmlab/error.h"
#include "lmlab/regression.h"
#include "text_file.h"
#include "text_mutations.h"

namespace lmlab {
namespace {

const char* const kFile = "/tmp/fuzz/regression.json";

std::vector<std::string> seeds() {
  return {
      harness_detail::read_text_file(std::string(LMLAB_SOURCE_DIR) + "/scenarios/regression.json", "regression scenario",
                                     1 << 20),
      R"({"name": "r", "models": [{"name": "m", "model": "x"}]})",
      R"({"name": "s", "description": "d", "models": [{"name": "a", "model": "/abs/dir"},
          {"name": "b", "synth": {"arch": "gemma3", "layers": 2, "sliding_window": 16, "max_positions": 9000, "seed": 3,
                                  "tokenizer_from": "tok"}}],
          "long_tokens": 6000, "short_tokens": 8, "shared_prefix_tokens": 100, "second_long_tokens": 5000,
          "max_tokens": 1, "seed": 9, "block_tokens": 8, "rss_budget_mb": 1,
          "server": {"ctx_size": 6001, "prefill_size": 1, "prompt_cache_mb": 1, "kv_budget_mb": 1, "threads": 2,
                     "parallel": 8}})",
  };
}

// Numbers at the edges of the relations the parser checks and of int64/int, key names, and strings a path takes.
const char* const kFragments[] = {"null", "true", "-1", "0", "1", "4", "8", "32", "5000", "5200", "8192", "0.5",
                                  "1e999", "-1e308", "9223372036854775807", "-9223372036854775808",
                                  "9223372036854775808", "18446744073709551616", "4294967300", "2147483648",
                                  "\"\"", "[]", "{}", "[{}]", "\"x\"", "\"\\u0000\"", "\"ÄÄÄ\"", "\"name\"",
                                  "\"model\"", "\"synth\"", "\"models\"", "\"server\"", "\"parallel\"", "\"ctx_size\"",
                                  "\"long_tokens\"", ",", ":", "{\"name\": \"m\", \"model\": \"x\"}"};

// What a parsed scenario promises the runner: the relations that make every expected prompt-cache count exact.
void expect_scenario_invariants(const RegressionScenario& s, const std::string& text) {
  ASSERT_EQ(s.file, kFile) << text;
  ASSERT_FALSE(s.name.empty()) << text;
  ASSERT_FALSE(s.models.empty()) << text;
  std::set<std::string> names;
  for (const RegressionModel& m : s.models) {
    ASSERT_FALSE(m.name.empty()) << text;
    ASSERT_TRUE(names.insert(m.name).second) << text;
    ASSERT_NE(m.dir.has_value(), m.synth.has_value()) << text;
    ASSERT_TRUE(!m.dir || m.dir->is_absolute()) << text;
    ASSERT_TRUE(!m.synth || m.synth->tokenizer_from.is_absolute()) << text;
  }
  for (const int64_t v : {s.long_tokens, s.short_tokens, s.shared_prefix_tokens, s.second_long_tokens, s.max_tokens,
                          s.block_tokens, s.ctx_size, s.prefill_size, s.prompt_cache_mb, s.kv_budget_mb, s.rss_budget_mb})
    ASSERT_GT(v, 0) << text;
  ASSERT_GE(s.threads, 0) << text;
  ASSERT_GE(s.long_tokens, 5000) << text;
  ASSERT_LE(s.short_tokens, s.block_tokens) << text;
  ASSERT_LT(s.shared_prefix_tokens, std::min(s.long_tokens, s.second_long_tokens)) << text;
  ASSERT_GE(s.parallel, 4) << text;
  ASSERT_LE(s.parallel, 1024) << text;
  // Both positive, so the difference cannot overflow.
  ASSERT_LE(s.max_tokens, s.ctx_size - std::max(s.long_tokens, s.second_long_tokens)) << text;
}

TEST(RegressionScenarioFuzz, MutatedScenariosParseOrThrowLmlabErrorNamingTheFile) {
  const std::vector<std::string> seed_texts = seeds();
  for (const std::string& seed : seed_texts) ASSERT_NO_THROW(parse_regression_scenario(seed, kFile)) << seed;
  std::mt19937_64 rng(20261214);
  int parsed = 0, rejected = 0, naming_a_field = 0;
  for (int i = 0; i < 20000; ++i) {
    const std::string& seed = seed_texts[i % seed_texts.size()];
    const std::string text =
        i % 2 ? test::mutate_text(seed, rng, kFragments, 3) : test::mutate_json_value(seed, rng, kFragments);
    try {
      const RegressionScenario s = parse_regression_scenario(text, kFile);
      ++parsed;
      expect_scenario_invariants(s, text);
      if (testing::Test::HasFatalFailure()) return;
    } catch (const Error& e) {
      ++rejected;
      const std::string what = e.what();
      ASSERT_NE(what.find(kFile), std::string::npos) << what << "\nscenario: " << text;
      if (what.find(": field '") != std::string::npos) ++naming_a_field;
    } catch (const std::exception& e) {
      FAIL() << "not an lmlab::Error: " << e.what() << "\nscenario: " << text;
    }
  }
  std::printf("[          ] 20000 mutated regression scenarios: %d parsed, %d rejected with lmlab::Error (%d naming a "
              "field)\n",
              parsed, rejected, naming_a_field);
  // The value mutations reach the reader's own checks, not only the JSON parser; many mutations keep it valid.
  EXPECT_GT(parsed, 1000);
  EXPECT_GT(naming_a_field, 4000);
}

}  // namespace
}  // namespace lmlab
