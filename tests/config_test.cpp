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

// ---- probe findings (issue 14): configs written here, parsed alone (no weights needed) ----

// A minimal valid config of `arch` with `edit` applied, in a fresh directory.
class ConfigOnly {
 public:
  ConfigOnly(const std::string& arch, const std::function<void(nlohmann::json&)>& edit) {
    dir_ = fs::temp_directory_path() / ("lmlab_cfgonly_" + std::to_string(counter_++) + "_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    nlohmann::json c = {{"model_type", arch},     {"vocab_size", 64},        {"hidden_size", 32},
                        {"num_hidden_layers", 3}, {"num_attention_heads", 4}, {"num_key_value_heads", 2},
                        {"head_dim", 8},          {"intermediate_size", 64}, {"max_position_embeddings", 128}};
    if (arch == "gemma3") {
      c["query_pre_attn_scalar"] = 8;
      c["sliding_window"] = 4;
    }
    edit(c);
    std::ofstream(dir_ / "config.json") << c.dump(1);
  }
  ~ConfigOnly() { fs::remove_all(dir_); }
  ModelSpec spec() const { return load_model_spec(dir_.string()); }

 private:
  fs::path dir_;
  static inline int counter_ = 0;
};

// The config is refused with a model_format / unsupported Error whose text names `field` and contains `says`.
void expect_refused(const std::string& arch, const std::function<void(nlohmann::json&)>& edit, const std::string& field,
                    const std::string& says = "") {
  ConfigOnly m(arch, edit);
  try {
    m.spec();
    ADD_FAILURE() << arch << ": accepted a bad " << field;
  } catch (const Error& e) {
    EXPECT_TRUE(e.kind() == ErrorKind::model_format || e.kind() == ErrorKind::unsupported) << e.what();
    const std::string w = e.what();
    EXPECT_NE(w.find("config.json"), std::string::npos) << w;
    EXPECT_NE(w.find(field), std::string::npos) << w;
    EXPECT_NE(w.find(says), std::string::npos) << w;
  }
}

TEST(ConfigProbe, LayerTypesMustListOneKnownTypePerLayer) {
  const auto sliding = [](nlohmann::json types) {
    return [types](nlohmann::json& c) {
      c["use_sliding_window"] = true;
      c["sliding_window"] = 4;
      c["layer_types"] = types;
    };
  };
  expect_refused("qwen3", sliding(nlohmann::json::array()), "layer_types", "3 layers");  // was a SIGSEGV
  expect_refused("qwen3", sliding({"sliding_attention", "full_attention"}), "layer_types", "got 2");  // was silent
  expect_refused("qwen3", sliding(7), "layer_types");                       // was raw JSON-library text
  expect_refused("qwen3", sliding({1, 2, 3}), "layer_types", "not supported");
  expect_refused("gemma3", [](nlohmann::json& c) { c["layer_types"] = {"full_attention", 0, "x"}; }, "layer_types");
  // A correct list takes effect.
  ConfigOnly ok("qwen3", sliding({"sliding_attention", "full_attention", "sliding_attention"}));
  const ModelSpec spec = ok.spec();
  EXPECT_EQ(spec.layers[0].window, 4);
  EXPECT_EQ(spec.layers[1].window, 0);
  EXPECT_EQ(spec.layers[2].window, 4);
}

TEST(ConfigProbe, ZeroOrNegativeSizesAndScalesAreRefused) {
  // gemma3 without layer_types and a zero pattern used to divide by zero (SIGFPE).
  expect_refused("gemma3", [](nlohmann::json& c) { c["sliding_window_pattern"] = 0; }, "sliding_window_pattern");
  expect_refused("gemma3", [](nlohmann::json& c) { c["sliding_window"] = 0; }, "sliding_window");
  expect_refused("gemma3", [](nlohmann::json& c) { c["sliding_window"] = -4; }, "sliding_window");
  expect_refused("gemma3", [](nlohmann::json& c) { c["query_pre_attn_scalar"] = 0; }, "query_pre_attn_scalar");
  expect_refused("llama", [](nlohmann::json& c) { c["max_position_embeddings"] = 0; }, "max_position_embeddings");
  expect_refused("llama", [](nlohmann::json& c) { c["max_position_embeddings"] = -1; }, "max_position_embeddings");
  expect_refused("llama", [](nlohmann::json& c) { c["rope_theta"] = 0; }, "rope_theta");
  expect_refused("llama", [](nlohmann::json& c) { c["rope_parameters"] = {{"rope_theta", -1.0}}; },
                 "rope_parameters.rope_theta");
  expect_refused("llama", [](nlohmann::json& c) { c["rms_norm_eps"] = -1e-6; }, "rms_norm_eps");
  expect_refused("llama", [](nlohmann::json& c) { c["partial_rotary_factor"] = 0; }, "partial_rotary_factor");
  expect_refused("llama", [](nlohmann::json& c) {
    c["rope_parameters"] = {{"rope_type", "linear"}, {"factor", 0}};
  }, "rope_parameters.factor");
  expect_refused("llama", [](nlohmann::json& c) {
    c["rope_parameters"] = {{"rope_type", "llama3"}, {"low_freq_factor", 4.0}, {"high_freq_factor", 4.0}};
  }, "high_freq_factor");
}

TEST(ConfigProbe, HugeSizesAreRefusedBeforeAnythingIsAllocated) {
  // head_dim 2^32 used to allocate 16 GB of RoPE tables; 2^62 layers threw std::length_error as "internal".
  expect_refused("llama", [](nlohmann::json& c) { c["head_dim"] = int64_t{1} << 32; }, "head_dim", "must be in");
  expect_refused("llama", [](nlohmann::json& c) { c["num_hidden_layers"] = int64_t{1} << 62; }, "num_hidden_layers");
  expect_refused("llama", [](nlohmann::json& c) { c["vocab_size"] = int64_t{1} << 40; }, "vocab_size");
  expect_refused("llama", [](nlohmann::json& c) { c["hidden_size"] = int64_t{1} << 40; }, "hidden_size");
  expect_refused("qwen3_moe", [](nlohmann::json& c) {
    c["num_experts"] = int64_t{1} << 40;
    c["num_experts_per_tok"] = 2;
    c["moe_intermediate_size"] = 16;
  }, "num_experts_per_tok");
}

TEST(ConfigProbe, WrongTypedValuesNameTheField) {
  expect_refused("llama", [](nlohmann::json& c) { c["rope_theta"] = "1e4"; }, "rope_theta", "expected a number");
  expect_refused("llama", [](nlohmann::json& c) { c["rope_parameters"] = {{"rope_theta", "1e4"}}; },
                 "rope_parameters.rope_theta");
  expect_refused("llama", [](nlohmann::json& c) { c["rope_parameters"] = {{"rope_type", 3}}; },
                 "rope_parameters.rope_type");
  expect_refused("qwen3_moe", [](nlohmann::json& c) {
    c["num_experts"] = 4;
    c["num_experts_per_tok"] = 2;
    c["moe_intermediate_size"] = 16;
    c["mlp_only_layers"] = "none";
  }, "mlp_only_layers");
}

}  // namespace
}  // namespace lmlab
