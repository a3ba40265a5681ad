// Golden tests: every fixture model against HF transformers' logits (one forward per prompt), greedy tokens
// and, for the trained coder models, perplexity on held-out ids.
#include <gtest/gtest.h>

#include <filesystem>

#include "arch/registry.h"
#include "kernels/cpu/matmul_half_i16.h"
#include "golden_checks.h"
#include "scoped_env.h"

namespace lmlab {
namespace {

class GoldenModel : public ::testing::TestWithParam<std::string> {};

TEST_P(GoldenModel, LogitsAndGreedyMatchTransformers) {
  auto model = Model::load(test::model_dir(GetParam()));
  test::expect_golden_logits_and_greedy(*model, GetParam());
}

// The same checks with every bf16 matrix allowed the int16 prefill GEMM (LMLAB_DENSE_FAST_MIN_WEIGHTS=0; by default
// only matrices of 2^20 weights and more take it, none of the fixtures'): the third golden prompt (110 tokens) runs
// it end to end. A 64-token prompt's last logits must differ in their bits from the default paths' (else the override
// reached no kernel and this test would prove nothing).
TEST_P(GoldenModel, LogitsAndGreedyMatchTransformersOnTheInt16Gemm) {
  if (!kernels::cpu::half_i16_gemm_available()) GTEST_SKIP() << "no int16 GEMM here (needs AVX-512 VNNI)";
  auto reference = Model::load(test::model_dir(GetParam()));
  std::shared_ptr<Model> model;
  {
    test::ScopedEnv fast("LMLAB_DENSE_FAST_MIN_WEIGHTS", "0");
    model = Model::load(test::model_dir(GetParam()));
  }
  std::vector<int32_t> prompt;
  for (int32_t i = 0; i < 64; ++i) prompt.push_back(1 + i % 50);
  auto a = model->new_session(), b = reference->new_session();
  const auto la = a->append(prompt), lb = b->append(prompt);
  EXPECT_FALSE(std::equal(la.begin(), la.end(), lb.begin(), lb.end())) << "the override changed no kernel";
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

// coder-dense's 600-token eval sequences on the int16 GEMM (every matrix allowed): perplexity and each token's NLL
// within the same bounds (measured: worst token 0.003). Not coder-moe: there one token sits on a routing near-tie
// that any change of the activations at the 1e-4 level flips (its NLL moved 0.007 to 0.34 across equally precise
// variants, perplexity 4.71132 against 4.71134; docs/measurements.md), as coder-moe-sparse-4bit's does for the
// affine kernels (golden_quant_test.cpp).
TEST(GoldenPerplexityInt16Gemm, CoderDenseWithinTheBounds) {
  if (!kernels::cpu::half_i16_gemm_available()) GTEST_SKIP() << "no int16 GEMM here (needs AVX-512 VNNI)";
  std::shared_ptr<Model> model;
  {
    test::ScopedEnv fast("LMLAB_DENSE_FAST_MIN_WEIGHTS", "0");
    model = Model::load(test::model_dir("coder-dense"));
  }
  test::expect_golden_perplexity(*model, "coder-dense");
}

INSTANTIATE_TEST_SUITE_P(Coder, GoldenPerplexity, ::testing::Values("coder-dense", "coder-moe"), test::param_name);

}  // namespace
}  // namespace lmlab
