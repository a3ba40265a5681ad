// Quality per config (scenario "quality"), against real references: the vanilla config's per-sequence NLL
// equals the golden file's eval_nll (transformers' fp32 forward); turbo's perplexity equals the engine's own
// evaluate_nll with the same options; KL from vanilla is zero for vanilla and small but positive for turbo;
// the figures land in the database and in both reports. Plus the scenario field's errors.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "fixtures.h"
#include "lmlab/error.h"
#include "lmlab/harness.h"
#include "lmlab/perplexity.h"
#include "lmlab/report.h"
#include "lmlab/safetensors.h"

namespace lmlab {
namespace {

namespace fs = std::filesystem;

const std::string kScenario = R"({
  "name": "quality", "contexts": [32], "repetitions": 1, "decode_tokens": 2,
  "configs": [{"name": "turbo"}, {"name": "vanilla"}],
  "quality": {"golden": "GOLDEN", "sequences": 2, "max_tokens": 600}
})";

Scenario scenario_with(std::string text, const fs::path& golden) {
  text.replace(text.find("GOLDEN"), 6, golden.string());
  return parse_scenario(text, "quality.json");
}

TEST(Quality, MatchesTheGoldenNllAndTheEnginesPerplexityAndIsStoredAndReported) {
  const fs::path golden = test::golden_path("coder-dense");
  Scenario s = scenario_with(kScenario, golden);
  s.model = test::model_dir("coder-dense");
  const fs::path db = fs::temp_directory_path() / ("lmlab_quality_" + std::to_string(::getpid()) + ".db");
  fs::remove(db);
  ResultsStore store = ResultsStore::open(db.string());
  const RunOutcome out = run_scenario(s, store, RunSettings{});
  EXPECT_EQ(out.quality_errors, 0);
  const std::vector<Evaluation> q = ResultsStore::open(db.string()).evaluations(out.run_id);
  ASSERT_EQ(q.size(), 4u);  // vanilla (the reference, evaluated first) then turbo, two sequences each
  SafetensorsFile g(golden.string());
  for (int i = 0; i < 2; ++i) {
    const Evaluation& v = q[static_cast<size_t>(i)];
    EXPECT_EQ(v.config, "vanilla");
    EXPECT_EQ(v.tokens, 599);
    EXPECT_FALSE(v.kl_sum.has_value());
    const auto nll = test::golden_tensor<float>(g, "eval_nll_" + std::to_string(i));
    double want = 0;
    for (size_t t = 0; t < 599; ++t) want += nll[t];
    EXPECT_NEAR(v.nll_sum / 599, want / 599, 2e-3) << "sequence " << i << ": mean NLL against transformers' fp32";
  }
  // Turbo against the engine's own perplexity path with the same options, sequence by sequence.
  const auto turbo = Model::load(*s.model, s.configs[0].options);
  for (int i = 0; i < 2; ++i) {
    const Evaluation& t = q[2 + static_cast<size_t>(i)];
    EXPECT_EQ(t.config, "turbo");
    EXPECT_EQ(t.reference_config, "vanilla");
    const auto ids = test::golden_tensor<int32_t>(g, "eval_ids_" + std::to_string(i));
    const NllResult r = evaluate_nll(*turbo, ids.subspan(0, 600));
    EXPECT_NEAR(t.nll_sum, r.mean_nll() * 599, 1e-6 * t.nll_sum);
    ASSERT_TRUE(t.kl_sum.has_value());
    EXPECT_GT(*t.kl_sum / 599, 0.0) << "5-bit K / 4-bit V changes the distributions";
    EXPECT_LT(*t.kl_sum / 599, 0.05);
  }
  const RunInfo run = *store.run(out.run_id);
  const std::string md = render_markdown(run, store.samples(out.run_id), {q, {}});
  const auto qs = summarize_quality(q);
  EXPECT_NE(md.find(fmt::format("| {:.4f} | reference |", qs[0].perplexity)), std::string::npos) << md;
  EXPECT_NE(md.find(fmt::format("| {:.4f} | {:.5f} |", qs[1].perplexity, *qs[1].kl_divergence)), std::string::npos) << md;
  const std::string ansi = render_ansi(run, store.samples(out.run_id), false, {q, {}});
  EXPECT_NE(ansi.find(fmt::format("{:.5f}", *qs[1].kl_divergence)), std::string::npos) << ansi;
  fs::remove(db);
}

TEST(Quality, ScenarioFieldErrorsNameTheField) {
  const fs::path golden = test::golden_path("coder-dense");
  auto error_of = [&](const std::string& quality) -> std::string {
    try {
      parse_scenario(R"({"name": "q", "contexts": [8], "configs": [{"name": "vanilla"}], "quality": )" + quality + "}", "q.json");
    } catch (const Error& e) {
      return e.what();
    }
    return "no error";
  };
  EXPECT_NE(error_of("{}").find("'quality.golden'"), std::string::npos);
  EXPECT_NE(error_of(R"({"golden": "/nonexistent.safetensors"})").find("not a readable file"), std::string::npos);
  EXPECT_NE(error_of(R"({"golden": ")" + golden.string() + R"(", "sequences": 0})").find("'quality.sequences'"), std::string::npos);
  EXPECT_NE(error_of(R"({"golden": ")" + golden.string() + R"(", "max_tokens": 1})").find("'quality.max_tokens'"), std::string::npos);
  EXPECT_NE(error_of(R"({"golden": ")" + golden.string() + R"(", "seqs": 1})").find("unknown key"), std::string::npos);
  // One set of evaluations per run: quality or perplexity_tokens, not both.
  try {
    parse_scenario(R"({"name": "q", "contexts": [8], "configs": [{"name": "vanilla"}], "perplexity_tokens": 64,
                       "quality": {"golden": ")" + golden.string() + R"("}})", "q.json");
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'perplexity_tokens'"), std::string::npos) << e.what();
  }
  // More sequences than the golden file holds: refused before the sweep starts, naming the tensor.
  Scenario s = scenario_with(kScenario, golden);
  s.model = test::model_dir("coder-dense");
  s.quality->sequences = 9;
  const fs::path db = fs::temp_directory_path() / ("lmlab_quality_bad_" + std::to_string(::getpid()) + ".db");
  ResultsStore store = ResultsStore::open(db.string());
  try {
    run_scenario(s, store, RunSettings{});
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("eval_ids_4"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(store.runs().empty()) << "nothing was recorded";
  fs::remove(db);
}

}  // namespace
}  // namespace lmlab
