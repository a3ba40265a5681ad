// Scenario files are outside input (written by hand, passed to `lmlab bench` and `lmlab report --reference`):
// seeded mutations of valid scenarios (byte flips, truncations, spliced JSON fragments; and, past the JSON layer,
// values replaced, keys dropped or renamed) must either parse into a scenario whose invariants hold or throw
// lmlab::Error; never another exception or a crash. The seeds cover every top-level key that needs no file on disk,
// the "reference" block included. (STYLE.md: a fuzz target beside every parser of outside input; the parser's named
// errors are in harness_test.cpp.)
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

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

using json = nlohmann::json;

void collect_paths(const json& j, const json::json_pointer& at, std::vector<json::json_pointer>& out) {
  out.push_back(at);
  if (j.is_object())
    for (const auto& [key, value] : j.items()) collect_paths(value, at / key, out);
  else if (j.is_array())
    for (size_t i = 0; i < j.size(); ++i) collect_paths(j[i], at / i, out);
}

// A mutation past the JSON layer: one value of the parsed seed replaced by a fragment, or its key dropped or renamed
// (a fragment that is a string), so that the reader's own checks, not the JSON parser, meet most of them.
std::string mutate_value(const std::string& seed, std::mt19937_64& rng) {
  json doc = json::parse(seed);
  std::vector<json::json_pointer> paths;
  collect_paths(doc, json::json_pointer(), paths);
  const json::json_pointer at = paths[1 + rng() % (paths.size() - 1)];  // never the root
  const char* fragment = kFragments[rng() % std::size(kFragments)];
  const json value = json::parse(fragment, nullptr, /*allow_exceptions=*/false);
  json& parent = doc[at.parent_pointer()];
  const bool in_object = parent.is_object();
  switch (rng() % 3) {
    case 0:
      if (in_object) {
        parent.erase(at.back());
        break;
      }
      [[fallthrough]];
    case 1:
      if (in_object && value.is_string()) {
        parent[value.get<std::string>()] = doc[at];
        parent.erase(at.back());
        break;
      }
      [[fallthrough]];
    default:
      if (!value.is_discarded()) doc[at] = value;
  }
  return doc.dump();
}

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
    const std::string text = i % 2 ? test::mutate_text(seed, rng, kFragments, 3) : mutate_value(seed, rng);
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
