// Fuzz-style robustness test of the gate baseline reader (results' gate_run_from_json), built with AddressSanitizer +
// UBSan in lmlab_fuzz_asan: the committed baseline file is outside input (edited by hand, merged by git).
#include <gtest/gtest.h>

#include <random>
#include <string>

#include "lmlab/gate.h"

namespace lmlab {
namespace {

// A small valid baseline file: two samples of one config and one evaluation.
std::string valid_file() {
  GateRun run;
  run.info.scenario = "ci-gate";
  run.info.model = "coder-moe";
  run.info.engine_config_json = R"({"contexts": [256], "repetitions": 2, "decode_tokens": 4})";
  for (int rep = 0; rep < 2; ++rep) {
    Sample s;
    s.config = "vanilla";
    s.context_tokens = 256;
    s.repetition = rep;
    s.decode_tokens = 4;
    s.decode_ns = 40'000'000 + rep;
    s.kv_cache_bytes = 1 << 20;
    s.output_tokens = {5, 6, 7, 8};
    run.samples.push_back(s);
  }
  run.evaluations.push_back(Evaluation{"vanilla", 255, 382.5, std::nullopt});
  return gate_run_to_json(run);
}

// Seeded mutations of a valid baseline file: every one parses or is refused with an lmlab::Error, never a crash
// (the reader is bounded and type-checks every field).
TEST(GateBaselineFile, FuzzedFilesParseOrAreRefused) {
  const std::string valid = valid_file();
  std::mt19937_64 rng(13);
  const std::string alphabet = "{}[]\":,0123456789-eE.tfnul \\x";
  int refused = 0;
  for (int i = 0; i < 3000; ++i) {
    std::string text = valid;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      const size_t pos = rng() % text.size();
      switch (rng() % 3) {
        case 0: text[pos] = alphabet[rng() % alphabet.size()]; break;
        case 1: text.erase(pos, 1 + rng() % 8); break;
        default: text.insert(pos, 1, alphabet[rng() % alphabet.size()]); break;
      }
      if (text.empty()) text = "x";
    }
    try {
      (void)gate_run_from_json(text, "fuzz.json");
    } catch (const Error&) {
      ++refused;
    }
  }
  EXPECT_GT(refused, 1000);
}

}  // namespace
}  // namespace lmlab
