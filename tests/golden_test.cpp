// Golden tests: every fixture model against HF transformers' logits (one forward per prompt), greedy tokens
// and, for the trained coder models, perplexity on held-out ids.
#include <gtest/gtest.h>

#include <filesystem>

#include "arch/registry.h"
#include "golden_checks.h"

namespace lmlab {
namespace {

class GoldenModel : public ::testing::TestWithParam<std::string> {};

TEST_P(GoldenModel, LogitsAndGreedyMatchTransformers) {
  auto model = Model::load(test::model_dir(GetParam()));
  test::expect_golden_logits_and_greedy(*model, GetParam());
}

INSTANTIATE_TEST_SUITE_P(Bf16, GoldenModel,
                         ::testing::Values("llama", "qwen3", "qwen3_moe", "mixtral", "gemma3", "coder-dense",
                                           "coder-moe"),
                         test::param_name);

// A registered architecture without a golden fixture is untested: fail.
TEST(GoldenCoverage, EveryRegisteredArchitectureHasAFixture) {
  for (auto arch : registered_archs()) {
    EXPECT_TRUE(std::filesystem::exists(test::model_dir(std::string(arch)))) << arch;
    EXPECT_TRUE(std::filesystem::exists(test::golden_path(std::string(arch)))) << arch;
  }
}

class GoldenPerplexity : public ::testing::TestWithParam<std::string> {};

TEST_P(GoldenPerplexity, WithinHalfPercentOfReference) {
  auto model = Model::load(test::model_dir(GetParam()));
  test::expect_golden_perplexity(*model, GetParam());
}

INSTANTIATE_TEST_SUITE_P(Coder, GoldenPerplexity, ::testing::Values("coder-dense", "coder-moe"), test::param_name);

}  // namespace
}  // namespace lmlab
