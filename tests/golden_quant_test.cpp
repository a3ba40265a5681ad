// Golden tests of the MLX affine-quantized fixtures (issue 3): llama-4bit (group 32), qwen3_moe-4bit (stacked
// switch_mlp experts, 8-bit router) and the trained coder-moe-sparse-4bit (group 64, 64 stacked experts,
// 8-bit router, quantized tied embedding). The golden logits were computed by transformers with the
// dequantized weights, so the checks are those of golden_test.cpp; plus perplexity for the trained model.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <filesystem>

#include "golden_checks.h"
#include "lmlab/error.h"
#include "lmlab/generate.h"
#include "lmlab/model.h"
#include "lmlab/perplexity.h"

namespace lmlab {
namespace {

class GoldenQuantModel : public ::testing::TestWithParam<std::string> {};

TEST_P(GoldenQuantModel, LogitsAndGreedyMatchTransformers) {
  auto model = Model::load(test::model_dir(GetParam()));
  EXPECT_EQ(model->info().weight_format.substr(0, 2), "q4") << "the fixture is a 4-bit MLX model";
  test::expect_golden_logits_and_greedy(*model, GetParam());
}

INSTANTIATE_TEST_SUITE_P(Mlx4bit, GoldenQuantModel,
                         ::testing::Values("llama-4bit", "qwen3_moe-4bit", "coder-moe-sparse-4bit"), test::param_name);

// The same checks with every 4-bit matrix on the fast paths (LMLAB_AFFINE_FAST_MIN_WEIGHTS=0): the split-int8
// decode kernel and, for prompts of 64 tokens or more, the vdpbf16ps prefill GEMM, which the fixtures' small matrices
// otherwise never reach end to end. The first decode step's logits must differ in their bits from the default
// paths' (else the override did nothing and this test would prove nothing).
TEST_P(GoldenQuantModel, LogitsAndGreedyMatchTransformersOnTheFastPaths) {
  auto reference = Model::load(test::model_dir(GetParam()));
  ::setenv("LMLAB_AFFINE_FAST_MIN_WEIGHTS", "0", 1);
  std::shared_ptr<Model> model;
  try {
    model = Model::load(test::model_dir(GetParam()));
  } catch (...) {
    ::unsetenv("LMLAB_AFFINE_FAST_MIN_WEIGHTS");
    throw;
  }
  ::unsetenv("LMLAB_AFFINE_FAST_MIN_WEIGHTS");
  const std::vector<int32_t> prompt = {1, 2, 3, 4, 5, 6, 7, 8};
  auto a = model->new_session(), b = reference->new_session();
  a->append(prompt);
  b->append(prompt);
  const int32_t next = 9;
  const std::span<const float> la = a->append(std::span(&next, 1)), lb = b->append(std::span(&next, 1));
  EXPECT_FALSE(std::equal(la.begin(), la.end(), lb.begin(), lb.end())) << "the override changed no kernel";
  test::expect_golden_logits_and_greedy(*model, GetParam());
}

TEST(GoldenQuantPerplexity, CoderMoeSparse4bitWithinHalfPercent) {
  auto model = Model::load(test::model_dir("coder-moe-sparse-4bit"));
  test::expect_golden_perplexity(*model, "coder-moe-sparse-4bit");
}

// A config that disagrees with the packed tensors fails at load, naming the tensor and what it implies.
TEST(GoldenQuantLoad, ConfigBitsThatDoNotMatchTheWeightsNameTheTensor) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("lmlab_quant_bits_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  for (const auto& e : fs::directory_iterator(test::model_dir("llama-4bit")))
    if (e.path().filename() != "config.json") fs::create_symlink(e.path(), dir / e.path().filename());
  std::ifstream in(test::model_dir("llama-4bit") / "config.json");
  nlohmann::json cfg = nlohmann::json::parse(in);
  cfg["quantization"]["bits"] = 8;
  std::ofstream(dir / "config.json") << cfg.dump();
  try {
    Model::load(dir);
    ADD_FAILURE() << "loaded 4-bit weights as 8-bit";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("model.embed_tokens.weight"), std::string::npos) << msg;
    EXPECT_NE(msg.find("4 bits"), std::string::npos) << msg;
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace lmlab
