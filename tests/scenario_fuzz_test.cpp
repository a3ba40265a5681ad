// Scenario files are outside input (written by hand, passed to `lmlab bench` and `lmlab report --reference`):
// seeded mutations of valid scenarios (byte flips, truncations, spliced JSON fragments; and, past the JSON layer,
// values replaced, keys dropped or renamed) must either parse into a scenario whose invariants hold or throw
// lmlab::Error; never another exception or a crash. The seeds cover every top-level key that needs no file on disk,
// the "reference" block included. (STYLE.md: a fuzz target beside every parser of outside input; the parser's named
// errors are in harness_test.cpp.)
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <random>
#include <string>

#include "lmlab/error.h"
#include "lmlab/harness.h"
#include "text_mutations.h"

namespace lmlab {
namespace {

const char* const kSeeds[] = {
    R"({"name": "t", "contexts": [16], "configs": [{"name": "vanilla"}]})",
    R"({"name": "g", "description": "d", "contexts": [64, 256], "repetitions": 2, "decode_tokens": 4,
        "prompt": {"source": "random", "seed": 7}, "options": {"threads": 1, "ctx_size": 1024},
        "configs": [{"name": "vanilla"}, {"name": "turbo", "options": {"kv_k_bits": 3}},
                    {"name": "f16", "preset": "vanilla", "options": {"kv_mode": "f16"}}],
        "interleave": true, "perplexity_tokens": 32,
        "gate": {"alpha": 0.05, "thresholds": {"decode_tok_s": 0.2}, "ratios": [["turbo", "vanilla"]]}})",
    R"({"name": "swiftlm", "contexts": [512, 40000, 100000],
        "configs": [{"name": "vanilla"}, {"name": "ssd"}, {"name": "turbo"}, {"name": "ssd+turbo"}],
        "reference": {"name": "SwiftLM", "description": "an M5 Pro sweep",
                      "decode_ratios": {"turbo": {"512": 1.00, "40000": 0.41, "100000": 0.26},
                                        "ssd": {"512": 0.13, "40000": 0.25}, "ssd+turbo": {"100000": 0.09}}}})",
};

const char* const kFragments[] = {"null", "true", "-1", "0", "1e999", "-1e308", "0.5", "1000.5", "\"\"", "[]", "{}",
                                  "\"512\"", "\"0512\"", "\"vanilla\"", "\"turbo\"", "\"reference\"", "\"decode_ratios\"",
                                  "\"name\"", "\"NaN\"", "18446744073709551616", ",", ":", "{\"512\": 2}",
                                  "\"ÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄ\""};

// What a parsed reference promises its readers (the runner, the report).
void expect_reference_invariants(const Scenario& s, const std::string& text) {
  const DecodeReference& r = *s.reference;
  ASSERT_FALSE(r.name.empty()) << text;
  ASSERT_LE(r.name.size(), 32u * 4) << text;  // 32 characters of at most 4 UTF-8 bytes
  ASSERT_EQ(r.baseline, s.configs.front().name) << text;
  for (const auto& [config, per_context] : r.decode_ratios) {
    ASSERT_NE(config, r.baseline) << text;
    ASSERT_TRUE(std::any_of(s.configs.begin(), s.configs.end(), [&](const BenchConfig& c) { return c.name == config; })) << text;
    for (const auto& [context, ratio] : per_context) {
      ASSERT_NE(std::find(s.contexts.begin(), s.contexts.end(), context), s.contexts.end()) << text;
      ASSERT_TRUE(ratio > 0 && ratio <= 1000) << text;
    }
  }
}

TEST(ScenarioFuzz, MutatedScenariosParseOrThrowLmlabError) {
  std::mt19937_64 rng(20261211);
  int parsed = 0, rejected = 0, with_reference = 0, refused_reference = 0;
  for (int i = 0; i < 30000; ++i) {
    const char* seed = kSeeds[i % std::size(kSeeds)];
    const std::string text =
        i % 2 ? test::mutate_text(seed, rng, kFragments, 3) : test::mutate_json_value(seed, rng, kFragments);
    try {
      const Scenario s = parse_scenario(text, "/tmp/fuzz.json");
      ++parsed;
      ASSERT_FALSE(s.configs.empty()) << text;
      ASSERT_FALSE(s.contexts.empty()) << text;
      if (s.reference) {
        ++with_reference;
        expect_reference_invariants(s, text);
        (void)reference_json(s);  // serializes whatever parsed
      }
    } catch (const Error& e) {
      ++rejected;
      if (std::string(e.what()).find("field 'reference") != std::string::npos) ++refused_reference;
    } catch (const std::exception& e) {
      FAIL() << "not an lmlab::Error: " << e.what() << "\nscenario: " << text;
    }
  }
  std::printf("[          ] 30000 mutated scenarios: %d parsed (%d with a reference), %d rejected with lmlab::Error (%d "
              "naming a field of the reference)\n",
              parsed, with_reference, rejected, refused_reference);
  // The value mutations reach the reference's reader: many keep it valid, many are refused by its own checks.
  EXPECT_GT(with_reference, 1000);
  EXPECT_GT(refused_reference, 1000);
  EXPECT_GT(rejected, 5000);
  for (const char* seed : kSeeds) EXPECT_NO_THROW(parse_scenario(seed, "/tmp/fuzz.json")) << seed;
}

}  // namespace
}  // namespace lmlab
