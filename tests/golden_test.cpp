// Golden tests: every fixture model against HF transformers' logits (one forward per prompt), greedy tokens
// and, for the trained coder models, perplexity on held-out ids.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "arch/registry.h"
#include "fixtures.h"
#include "lmlab/generate.h"
#include "lmlab/model.h"
#include "lmlab/perplexity.h"

namespace lmlab {
namespace {

using test::golden_tensor;

constexpr double kMaxAbsLogitError = 2e-2;   // issue 2: max |logit - golden|
constexpr double kMaxRelLogitError = 1e-3;   // ... relative to the golden logit range

class GoldenModel : public ::testing::TestWithParam<std::string> {};

TEST_P(GoldenModel, LogitsAndGreedyMatchTransformers) {
  const std::string name = GetParam();
  auto model = Model::load(test::model_dir(name));
  SafetensorsFile golden(test::golden_path(name));
  int checked = 0;
  for (int i = 0;; ++i) {
    auto prompt = golden_tensor<int32_t>(golden, "prompt_" + std::to_string(i));
    if (prompt.empty()) break;
    SCOPED_TRACE(name + " prompt_" + std::to_string(i));
    auto want = golden_tensor<float>(golden, "logits_" + std::to_string(i));
    auto greedy = golden_tensor<int32_t>(golden, "greedy_" + std::to_string(i));
    auto session = model->new_session();
    auto got = session->append(prompt, true);
    ASSERT_EQ(got.size(), want.size());
    double max_abs = 0.0;
    size_t worst = 0;
    float lo = want[0], hi = want[0];
    for (size_t j = 0; j < got.size(); ++j) {
      const double d = std::fabs(static_cast<double>(got[j]) - want[j]);
      if (d > max_abs) max_abs = d, worst = j;
      lo = std::min(lo, want[j]);
      hi = std::max(hi, want[j]);
    }
    EXPECT_LE(max_abs, kMaxAbsLogitError) << "worst at token " << worst / model->info().vocab << " id "
                                          << worst % model->info().vocab;
    EXPECT_LE(max_abs / (hi - lo), kMaxRelLogitError) << "logit range " << hi - lo;

    SamplingParams sp;
    sp.max_tokens = static_cast<int64_t>(greedy.size());
    sp.stop_at_eos = false;
    auto gen_session = model->new_session();
    auto res = generate(*gen_session, prompt, sp);
    EXPECT_EQ(res.tokens, std::vector<int32_t>(greedy.begin(), greedy.end()));
    ++checked;
  }
  EXPECT_EQ(checked, 3) << "each golden file holds three prompts";
}

INSTANTIATE_TEST_SUITE_P(Bf16, GoldenModel,
                         ::testing::Values("llama", "qwen3", "qwen3_moe", "mixtral", "gemma3", "coder-dense",
                                           "coder-moe"),
                         [](const auto& info) {
                           std::string s = info.param;
                           for (auto& c : s) if (c == '-') c = '_';
                           return s;
                         });

// A registered architecture without a golden fixture is untested: fail.
TEST(GoldenCoverage, EveryRegisteredArchitectureHasAFixture) {
  for (auto arch : registered_archs()) {
    EXPECT_TRUE(std::filesystem::exists(test::model_dir(std::string(arch)))) << arch;
    EXPECT_TRUE(std::filesystem::exists(test::golden_path(std::string(arch)))) << arch;
  }
}

class GoldenPerplexity : public ::testing::TestWithParam<std::string> {};

TEST_P(GoldenPerplexity, WithinHalfPercentOfReference) {
  const std::string name = GetParam();
  auto model = Model::load(test::model_dir(name));
  SafetensorsFile golden(test::golden_path(name));
  std::ifstream in(test::fixtures_dir() / "golden" / (name + ".json"));
  const double want_ppl = nlohmann::json::parse(in)["eval_ppl"].get<double>();
  double total = 0.0;
  size_t count = 0;
  double worst_token_err = 0.0;
  for (int i = 0;; ++i) {
    auto ids = golden_tensor<int32_t>(golden, "eval_ids_" + std::to_string(i));
    if (ids.empty()) break;
    auto want_nll = golden_tensor<float>(golden, "eval_nll_" + std::to_string(i));
    NllResult r = evaluate_nll(*model, ids);
    ASSERT_EQ(r.nll.size(), want_nll.size());
    for (size_t j = 0; j < r.nll.size(); ++j) worst_token_err = std::max(worst_token_err, std::fabs(r.nll[j] - want_nll[j]));
    for (double x : r.nll) total += x;
    count += r.nll.size();
  }
  ASSERT_GT(count, 0u);
  const double ppl = std::exp(total / static_cast<double>(count));
  EXPECT_NEAR(ppl, want_ppl, 0.005 * want_ppl) << name << " perplexity " << ppl;
  EXPECT_LT(worst_token_err, 0.05) << "per-token NLL against the fp32 reference";
}

INSTANTIATE_TEST_SUITE_P(Coder, GoldenPerplexity, ::testing::Values("coder-dense", "coder-moe"),
                         [](const auto& info) {
                           std::string s = info.param;
                           for (auto& c : s) if (c == '-') c = '_';
                           return s;
                         });

}  // namespace
}  // namespace lmlab
