// config.json parsing: both transformers spellings (4.x and 5.x) load to the same model, unknown
// architectures and missing or wrong fields fail with an error naming file and field, ignored keys are listed.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <functional>
#include <fstream>
#include <nlohmann/json.hpp>

#include "arch/registry.h"
#include "fixtures.h"
#include "lmlab/error.h"
#include "lmlab/model.h"

namespace lmlab {
namespace {

namespace fs = std::filesystem;

// A copy of a fixture model whose config.json is edited by `edit`; weights and tokenizer are symlinked.
class EditedModel {
 public:
  EditedModel(const std::string& fixture, const std::function<void(nlohmann::json&)>& edit) {
    dir_ = fs::temp_directory_path() / ("lmlab_cfg_" + fixture + "_" + std::to_string(counter_++) + "_" +
                                        std::to_string(::getpid()));
    fs::create_directories(dir_);
    const fs::path src = test::model_dir(fixture);
    for (const auto& e : fs::directory_iterator(src))
      if (e.path().filename() != "config.json") fs::create_symlink(e.path(), dir_ / e.path().filename());
    std::ifstream in(src / "config.json");
    nlohmann::json cfg = nlohmann::json::parse(in);
    edit(cfg);
    std::ofstream(dir_ / "config.json") << cfg.dump(1);
  }
  ~EditedModel() { fs::remove_all(dir_); }
  const fs::path& dir() const { return dir_; }

 private:
  fs::path dir_;
  static inline int counter_ = 0;
};

std::vector<float> logits_of(const fs::path& dir, std::span<const int32_t> prompt) {
  auto model = Model::load(dir);
  auto s = model->new_session();
  auto l = s->append(prompt, true);
  return {l.begin(), l.end()};
}

const std::vector<int32_t> kPrompt = {5, 17, 300, 42, 1000, 7, 99, 250};

TEST(Config, Transformers4SpellingsLoadTheSameQwen3Moe) {
  EditedModel old("qwen3_moe", [](nlohmann::json& c) {
    c["rope_theta"] = c["rope_parameters"]["rope_theta"];
    c.erase("rope_parameters");
    c["num_experts"] = c["num_local_experts"];
    c.erase("num_local_experts");
    c.erase("dtype");  // torch_dtype stays
  });
  EXPECT_EQ(logits_of(old.dir(), kPrompt), logits_of(test::model_dir("qwen3_moe"), kPrompt));
}

TEST(Config, Transformers4SpellingsLoadTheSameGemma3) {
  EditedModel old("gemma3", [](nlohmann::json& c) {
    c["rope_theta"] = c["rope_parameters"]["full_attention"]["rope_theta"];
    c["rope_local_base_freq"] = c["rope_parameters"]["sliding_attention"]["rope_theta"];
    c.erase("rope_parameters");
    c.erase("layer_types");  // sliding_window_pattern 3: every third layer global
    c["model_type"] = "gemma3";
  });
  EXPECT_EQ(logits_of(old.dir(), kPrompt), logits_of(test::model_dir("gemma3"), kPrompt));
}

TEST(Config, UnknownArchitectureIsNamed) {
  EditedModel m("llama", [](nlohmann::json& c) { c["model_type"] = "falcon_mamba"; });
  try {
    Model::load(m.dir());
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::unsupported);
    const std::string w = e.what();
    EXPECT_NE(w.find("falcon_mamba"), std::string::npos) << w;
    EXPECT_NE(w.find("config.json"), std::string::npos) << w;
    EXPECT_NE(w.find("model_type"), std::string::npos) << w;
  }
}

TEST(Config, MissingOrWrongFieldsAreNamed) {
  struct Case {
    std::function<void(nlohmann::json&)> edit;
    std::string field;
  };
  const Case cases[] = {
      {[](nlohmann::json& c) { c.erase("hidden_size"); }, "hidden_size"},
      {[](nlohmann::json& c) { c["num_hidden_layers"] = "two"; }, "num_hidden_layers"},
      {[](nlohmann::json& c) { c["num_key_value_heads"] = 3; }, "num_key_value_heads"},
      {[](nlohmann::json& c) { c["rope_parameters"]["rope_type"] = "yarn"; }, "rope_parameters"},
      {[](nlohmann::json& c) { c["hidden_act"] = "relu2"; }, "hidden_act"},
      {[](nlohmann::json& c) { c["intermediate_size"] = 300; }, "mlp.gate_proj"},  // shape vs weights
  };
  for (const auto& c : cases) {
    EditedModel m("llama", c.edit);
    try {
      Model::load(m.dir());
      ADD_FAILURE() << "loaded despite a bad " << c.field;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(c.field), std::string::npos) << e.what();
    }
  }
}

TEST(Config, IgnoredKeysAreListed) {
  EditedModel m("llama", [](nlohmann::json& c) { c["some_future_knob"] = 3; });
  auto model = Model::load(m.dir());
  const auto& ignored = model->info().ignored_config_keys;
  EXPECT_NE(std::find(ignored.begin(), ignored.end(), "some_future_knob"), ignored.end());
  EXPECT_EQ(std::find(ignored.begin(), ignored.end(), "hidden_size"), ignored.end());
}

TEST(Config, Llama3RopeScalingFollowsTheWavelengthRule) {
  // Llama 3.1's published parameters: factor 8, low 1, high 4, original context 8192, theta 500000.
  EditedModel m("llama", [](nlohmann::json& c) {
    c["rope_parameters"] = {{"rope_type", "llama3"}, {"rope_theta", 500000.0}, {"factor", 8.0},
                            {"low_freq_factor", 1.0}, {"high_freq_factor", 4.0},
                            {"original_max_position_embeddings", 8192}};
  });
  ModelSpec spec = load_model_spec(m.dir().string());
  const auto& f = spec.ropes[0].inv_freq;
  const double d = static_cast<double>(spec.ropes[0].rot_dim);
  for (size_t i = 0; i < f.size(); ++i) {
    const double base = 1.0 / std::pow(500000.0, 2.0 * i / d), wavelen = 2 * M_PI / base;
    if (wavelen < 8192 / 4.0) EXPECT_NEAR(f[i], base, 1e-6 * base) << i;            // high frequency: kept
    else if (wavelen > 8192 / 1.0) EXPECT_NEAR(f[i], base / 8, 1e-6 * base) << i;  // low frequency: / factor
    else EXPECT_TRUE(f[i] < base && f[i] > base / 8) << i;                        // smooth in between
  }
  // And the model runs with it.
  EXPECT_EQ(logits_of(m.dir(), kPrompt).size(), kPrompt.size() * 4096);
}

}  // namespace
}  // namespace lmlab
