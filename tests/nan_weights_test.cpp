// A checkpoint with a NaN in its weights (a broken conversion, a bad download) must not crash the engine: on the GPU a
// NaN router logit once routed to expert E, one past the last, and the gathered GEMVs' illegal access killed the
// process's CUDA context (docs/cuda.md, twenty-fourth session); on the CPU the routing's and the sampler's sorts
// compared NaNs. Here a tiny qwen3_moe synth (bf16 and 4-bit) gets NaN in layer 0's MoE input norm, so every router
// logit after it is NaN; generation, greedy and sampled, runs to the end with ids in the vocabulary on the CPU (also
// with streamed experts, whose reads follow the routed ids, and with the TurboQuant cache, which encodes NaN keys and
// values) and, where a GPU is, on CUDA.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <ostream>
#include <string>
#include <vector>

#include "fixtures.h"
#include "lmlab/generate.h"
#include "lmlab/model.h"
#include "lmlab/safetensors.h"
#include "lmlab/synth.h"
#include "model/backend_factory.h"
#include "tiny_model.h"

namespace lmlab {
namespace {

namespace fs = std::filesystem;

constexpr const char* kPoisoned = "model.layers.0.post_attention_layernorm.weight";

// A qwen3_moe synth of `bits` (test::TinyModel) with kPoisoned's first bf16 value set to NaN in its shard.
class PoisonedSynth {
 public:
  explicit PoisonedSynth(int bits) : model_(options(bits), "poisoned") {
    for (const auto& entry : fs::directory_iterator(model_.dir())) {
      if (entry.path().extension() != ".safetensors") continue;
      uint64_t offset = 0;
      {
        SafetensorsFile f(entry.path());
        for (const TensorInfo& t : f.tensors())
          if (t.name == kPoisoned) offset = t.offset;
      }
      if (offset == 0) continue;
      std::fstream file(entry.path(), std::ios::in | std::ios::out | std::ios::binary);
      const uint8_t nan_bf16[2] = {0xc0, 0x7f};  // 0x7fc0, little-endian
      file.seekp(static_cast<std::streamoff>(offset));
      file.write(reinterpret_cast<const char*>(nan_bf16), 2);
      poisoned_ = file.good();
    }
  }
  const fs::path& dir() const { return model_.dir(); }
  bool poisoned() const { return poisoned_; }

 private:
  static SynthOptions options(int bits) {
    SynthOptions opt;
    opt.shape = synth_default_shape("qwen3_moe");
    opt.bits = bits;
    opt.seed = 3;
    opt.tokenizer_from = test::model_dir("coder-dense");
    return opt;
  }

  test::TinyModel model_;
  bool poisoned_ = false;
};

struct Case {
  const char* name;
  int bits;
  Device device;
  bool stream_experts;
  KvMode kv_mode = KvMode::f32;  // turbo: NaN keys and values through the TurboQuant encode
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }  // ctest's listing names the case, not its bytes

class NanWeights : public ::testing::TestWithParam<Case> {};

TEST_P(NanWeights, GenerationRunsToTheEndWithIdsInTheVocabulary) {
  const Case c = GetParam();
  if (c.device == Device::cuda)
    if (const std::string why = device_unavailable_reason(Device::cuda); !why.empty()) GTEST_SKIP() << why;
  const PoisonedSynth synth(c.bits);
  ASSERT_TRUE(synth.poisoned()) << kPoisoned << " not found in the synth";
  ModelOptions options;
  options.device = c.device;
  options.stream_experts = c.stream_experts;
  options.kv_mode = c.kv_mode;
  auto model = Model::load(synth.dir(), options);
  const int64_t vocab = model->info().vocab;
  const std::vector<int32_t> prompt = model->tokenizer().encode("def main():\n    return");
  {  // the poison reaches the logits: every one NaN
    auto probe = model->new_session();
    const auto logits = probe->append(prompt);
    EXPECT_TRUE(std::all_of(logits.begin(), logits.end(), [](float l) { return std::isnan(l); }));
  }
  for (float temperature : {0.0f, 0.8f}) {
    SCOPED_TRACE(::testing::Message() << "temperature " << temperature);
    SamplingParams sp;
    sp.temperature = temperature;
    sp.top_p = 0.9f;
    sp.seed = 1;
    sp.max_tokens = 6;
    sp.stop_at_eos = false;
    sp.logprobs = 3;
    auto session = model->new_session();
    const GenerationResult g = generate(*session, prompt, sp);
    ASSERT_EQ(g.tokens.size(), 6u);
    for (int32_t id : g.tokens) {
      EXPECT_GE(id, 0);
      EXPECT_LT(id, vocab);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Qwen3Moe, NanWeights,
                         ::testing::Values(Case{"bf16_cpu", 16, Device::cpu, false},
                                           Case{"q4_cpu", 4, Device::cpu, false},
                                           Case{"bf16_cpu_streamed", 16, Device::cpu, true},
                                           Case{"bf16_cpu_turbo", 16, Device::cpu, false, KvMode::turbo},
                                           Case{"bf16_cuda", 16, Device::cuda, false},
                                           Case{"q4_cuda", 4, Device::cuda, false},
                                           Case{"q4_cuda_streamed", 4, Device::cuda, true},
                                           Case{"q4_cuda_turbo", 4, Device::cuda, false, KvMode::turbo}),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace lmlab
