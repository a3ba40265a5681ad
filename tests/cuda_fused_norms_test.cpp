// Decode's fused layers on the GPU (cuda_backend.cpp plan_fused_norms: a dense 4/8-bit layer's RMSNorms and
// residual adds inside its GEMVs) end to end: a 4-bit qwen3 synth whose matrices all take the shared-x GEMV decodes
// the same logits with the fusion (LMLAB_FUSED_NORMS=1, opt-in until measured) as without it, step by step. Without a
// GPU it skips.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include "fixtures.h"
#include "lmlab/model.h"
#include "lmlab/synth.h"
#include "model/backend_factory.h"
#include "model/model_impl.h"
#include "scoped_env.h"
#include "tolerance.h"

namespace lmlab {
namespace {

namespace fs = std::filesystem;

class CudaFusedNorms : public ::testing::Test {
 protected:
  void SetUp() override {
    if (const std::string why = device_unavailable_reason(Device::cuda); !why.empty())
      GTEST_SKIP() << "CUDA fused norms not tested: " << why;
    dir_ = fs::temp_directory_path() / ("lmlab_fused_norms_" + std::to_string(::getpid()));
    SynthOptions opt;
    // Every projection of >= 2^20 weights (k and v: 512 x 2048), so every one takes the shared-x GEMV.
    opt.shape = synth_default_shape("qwen3");
    opt.shape.hidden = 2048, opt.shape.layers = 2, opt.shape.heads = 16, opt.shape.kv_heads = 4;
    opt.shape.head_dim = 128, opt.shape.intermediate = 2048, opt.shape.tied_embeddings = false;
    opt.bits = 4;
    opt.seed = 11;
    opt.tokenizer_from = test::model_dir("qwen3");
    synth_model(dir_, opt);
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }
  std::shared_ptr<Model> load() const {
    ModelOptions o;
    o.device = Device::cuda;
    o.ctx_size = 1024;
    return Model::load(dir_, o);
  }
  fs::path dir_;
};

TEST_F(CudaFusedNorms, DecodeEqualsTheSeparateNormsAndAdds) {
  std::shared_ptr<Model> fused, separate;
  {
    const test::ScopedEnv on("LMLAB_FUSED_NORMS", "1");
    fused = load();
  }
  {
    const test::ScopedEnv off("LMLAB_FUSED_NORMS", "0");
    separate = load();
  }
  EXPECT_NE(fused->impl().backend->device_plan().find("decode norms fused into the GEMVs in 2 of 2 layers and the head"),
            std::string::npos)
      << fused->impl().backend->device_plan();
  EXPECT_EQ(separate->impl().backend->device_plan().find("norms fused"), std::string::npos);
  auto a = fused->new_session(), b = separate->new_session();
  std::vector<int32_t> prompt(29);
  for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = static_cast<int32_t>((i * 7919 + 5) % 4000);
  std::span<const float> la = a->append(prompt), lb = b->append(prompt);  // the chunk: no fusion
  for (int step = 0; step < 24; ++step) {
    const int32_t next = static_cast<int32_t>(std::max_element(la.begin(), la.end()) - la.begin());
    la = a->append(std::vector<int32_t>{next});
    lb = b->append(std::vector<int32_t>{next});
    // The same floats but for the sum of squares' order and the int16 rounding of x that follows it (gemv.cu):
    // far below a missed add or norm, which moves every logit.
    test::expect_close(la, lb, test::tolerance(kernels::WeightType::bf16, 1), "decode step logits");
    ASSERT_FALSE(::testing::Test::HasFailure()) << "decode step " << step;
  }
}

}  // namespace
}  // namespace lmlab
