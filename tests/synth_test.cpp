// `synth` (lmlab/synth.h): a tiny random model of every architecture, bf16 and 4-bit, loads with
// Model::load and generates; the index maps every tensor to the shard that holds it; shards respect
// --shard-mb; presets and --scale keep the architecture's invariants.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "fixtures.h"
#include "lmlab/error.h"
#include "lmlab/generate.h"
#include "lmlab/model.h"
#include "lmlab/safetensors.h"
#include "lmlab/synth.h"
#include "util/half.h"

namespace lmlab {
namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  explicit TempDir(const std::string& tag) {
    path_ = fs::temp_directory_path() / fmt::format("lmlab_synth_{}_{}_{}", tag, ::getpid(), counter_++);
    fs::remove_all(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
  static inline int counter_ = 0;
};

struct Case {
  const char* arch;
  int bits;
};

class SynthArch : public ::testing::TestWithParam<Case> {};

TEST_P(SynthArch, LoadsGeneratesAndIndexesEveryTensor) {
  const Case c = GetParam();
  TempDir out(fmt::format("{}_{}", c.arch, c.bits));
  SynthOptions opt;
  opt.shape = synth_default_shape(c.arch);
  opt.bits = c.bits;
  opt.seed = 7;
  opt.shard_bytes = uint64_t{1} << 20;  // 1 MiB: several shards even for a tiny model
  opt.tokenizer_from = test::model_dir("coder-dense");
  const SynthResult r = synth_model(out.path(), opt);
  EXPECT_EQ(r.shape.vocab, 4096) << "the tokenizer's vocabulary";
  EXPECT_GT(r.shards, 1);

  // The index maps every tensor of every shard, to that shard, and nothing else.
  std::ifstream in(out.path() / "model.safetensors.index.json");
  const nlohmann::json index = nlohmann::json::parse(in);
  const auto& map = index["weight_map"];
  std::set<std::string> shard_files;
  for (auto it = map.begin(); it != map.end(); ++it) shard_files.insert(it.value().get<std::string>());
  EXPECT_EQ(static_cast<int>(shard_files.size()), r.shards);
  size_t n_tensors = 0;
  uint64_t total = 0;
  for (const auto& name : shard_files) {
    SafetensorsFile f(out.path() / name);
    uint64_t data_bytes = 0;
    for (const auto& t : f.tensors()) {
      ASSERT_TRUE(map.contains(t.name)) << t.name;
      EXPECT_EQ(map[t.name], name) << t.name;
      data_bytes += t.nbytes;
    }
    n_tensors += f.tensors().size();
    total += data_bytes;
    // Tensor data per shard within --shard-mb, unless one tensor alone is larger.
    EXPECT_TRUE(data_bytes <= opt.shard_bytes || f.tensors().size() == 1) << name << ": " << data_bytes << " bytes";
    EXPECT_EQ(f.metadata().at("format"), c.bits == 16 ? "pt" : "mlx");
  }
  EXPECT_EQ(n_tensors, map.size());
  EXPECT_EQ(index["metadata"]["total_size"].get<uint64_t>(), total);

  auto model = Model::load(out.path());
  EXPECT_EQ(model->info().weight_format, c.bits == 16 ? "BF16" : "q4g64");
  EXPECT_TRUE(model->info().ignored_config_keys.size() < 20);
  const std::vector<int32_t> prompt = model->tokenizer().encode("def main():");
  SamplingParams sp;
  sp.max_tokens = 4;
  sp.stop_at_eos = false;
  auto session = model->new_session();
  const GenerationResult g = generate(*session, prompt, sp);
  EXPECT_EQ(g.tokens.size(), 4u);
}

INSTANTIATE_TEST_SUITE_P(Tiny, SynthArch,
                         ::testing::Values(Case{"llama", 16}, Case{"llama", 4}, Case{"qwen3", 16}, Case{"qwen3", 4},
                                           Case{"qwen3_moe", 16}, Case{"qwen3_moe", 4}, Case{"mixtral", 16},
                                           Case{"mixtral", 4}, Case{"gemma3", 16}, Case{"gemma3", 4}),
                         [](const auto& info) { return fmt::format("{}_{}bit", info.param.arch, info.param.bits); });

// A one-layer tiny model of `arch`.
SynthOptions one_layer(const char* arch, int bits, uint64_t seed) {
  SynthOptions opt;
  opt.shape = synth_default_shape(arch);
  opt.shape.layers = 1;
  opt.bits = bits;
  opt.seed = seed;
  opt.tokenizer_from = test::model_dir("coder-dense");
  return opt;
}

TEST(Synth, SameSeedSameBytes) {
  TempDir a("seed_a"), b("seed_b");
  const SynthOptions opt = one_layer("llama", 4, 11);
  synth_model(a.path(), opt);
  synth_model(b.path(), opt);
  auto bytes = [](const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  EXPECT_EQ(bytes(a.path() / "model.safetensors"), bytes(b.path() / "model.safetensors"));
}

// --embed-std sets the token embeddings' spread alone (the other matrices keep the 0.02 init); out-of-range values
// are refused naming the flag.
TEST(Synth, EmbedStdSetsTheEmbeddingsSpreadAlone) {
  TempDir out("embed_std");
  SynthOptions opt = one_layer("qwen3", 16, 5);
  opt.embed_std = 1.0f;
  synth_model(out.path(), opt);
  SafetensorsFile f(out.path() / "model.safetensors");
  auto stddev = [&](const char* name) {
    const TensorInfo* t = f.find(name);
    EXPECT_NE(t, nullptr) << name;
    if (!t) return 0.0;
    const auto* v = reinterpret_cast<const uint16_t*>(f.data(*t));
    double sum = 0, sq = 0;
    for (int64_t i = 0; i < t->numel(); ++i) {
      const double x = bf16_to_f32(v[i]);
      sum += x, sq += x * x;
    }
    const double n = static_cast<double>(t->numel()), mean = sum / n;
    return std::sqrt(sq / n - mean * mean);
  };
  EXPECT_NEAR(stddev("model.embed_tokens.weight"), 1.0, 0.02);
  EXPECT_NEAR(stddev("model.layers.0.self_attn.q_proj.weight"), 0.02, 0.0005);
  for (float bad : {0.0f, -1.0f, std::nanf(""), 1000.0f}) {
    TempDir again("embed_std_bad");
    opt.embed_std = bad;
    try {
      synth_model(again.path(), opt);
      ADD_FAILURE() << bad << " accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("--embed-std"), std::string::npos) << e.what();
    }
  }
}

TEST(Synth, PresetsHaveTheirRealSizes) {
  // Total parameters with the preset's own vocabulary (billions), from the public model cards.
  EXPECT_NEAR(synth_preset("llama-3-8b").parameter_count() / 1e9, 8.03, 0.05);
  EXPECT_NEAR(synth_preset("qwen3-30b-a3b").parameter_count() / 1e9, 30.5, 0.3);
  EXPECT_NEAR(synth_preset("qwen3-30b-a3b").active_parameter_count() / 1e9, 3.3, 0.2);
  EXPECT_NEAR(synth_preset("gemma-3-27b-like").parameter_count() / 1e9, 27.0, 1.0);
  EXPECT_NEAR(synth_preset("qwen3.5-122b-a10b-like").parameter_count() / 1e9, 122.0, 5.0);
  EXPECT_THROW(synth_preset("gpt-5"), Error);
}

TEST(Synth, ScaleKeepsHeadDimAndDivisibility) {
  for (const auto& name : synth_preset_names()) {
    SCOPED_TRACE(name);
    const SynthShape full = synth_preset(name);
    const SynthShape s = scale_shape(full, 0.1);
    EXPECT_EQ(s.arch, full.arch);
    EXPECT_EQ(s.head_dim, full.head_dim);
    EXPECT_EQ(s.experts, full.experts);
    EXPECT_EQ(s.top_k, full.top_k);
    EXPECT_EQ(s.hidden % 128, 0);
    EXPECT_EQ(s.intermediate % 128, 0);
    EXPECT_EQ(s.heads % s.kv_heads, 0);
    EXPECT_EQ(s.heads / s.kv_heads, full.heads / full.kv_heads) << "grouped-query ratio";
    if (full.hidden == full.heads * full.head_dim) EXPECT_EQ(s.hidden, s.heads * s.head_dim);
    EXPECT_LT(s.hidden, full.hidden);
    EXPECT_LT(s.layers, full.layers);
    EXPECT_GE(s.layers, 1);
  }
}

TEST(Synth, RejectsShapesThatCannotBeQuantized) {
  TempDir out("reject");
  SynthOptions opt;
  opt.shape = synth_default_shape("llama");
  opt.shape.hidden = 200;  // not a multiple of 64
  opt.bits = 4;
  opt.tokenizer_from = test::model_dir("coder-dense");
  try {
    synth_model(out.path(), opt);
    FAIL() << "accepted hidden 200 at group size 64";
  } catch (const Error& e) {
    EXPECT_EQ(e.where(), "--hidden");
  }
  EXPECT_FALSE(fs::exists(out.path())) << "nothing written on a rejected shape";
}

}  // namespace
}  // namespace lmlab
