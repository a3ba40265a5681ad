// lmlab synth --arch A [--preset NAME | shape flags] [--scale F] --bits 4|8|16 --out DIR: a random-weight model
// of a real architecture and size (lmlab/synth.h). Shape: the preset (or a tiny default of the
// architecture), then --scale, then any explicit shape flag.
#include <fmt/format.h>

#include <filesystem>
#include <optional>

#include "common.h"
#include "lmlab/synth.h"
#include "progress.h"

namespace lmlab::cli {

namespace {

struct Flags {
  std::string arch, preset, out, tokenizer_from;
  double scale = 1.0;
  std::optional<int64_t> hidden, layers, heads, kv_heads, head_dim, intermediate, experts, top_k, moe_intermediate,
      vocab, sliding_window, max_positions;
  int bits = 16, group_size = 64;
  uint64_t seed = 0;
  float embed_std = 0.02f;
  int64_t shard_mb = 5000;
  bool quiet = false;
};

int run_synth(const Flags& fl) {
  SynthShape shape;
  if (!fl.preset.empty()) {
    shape = synth_preset(fl.preset);
    if (!fl.arch.empty() && fl.arch != shape.arch)
      throw Error(ErrorKind::invalid_input, "--arch",
                  fmt::format("preset '{}' is a {} model, not {}", fl.preset, shape.arch, fl.arch));
  } else {
    if (fl.arch.empty()) throw Error(ErrorKind::invalid_input, "--arch", "give --arch or --preset");
    shape = synth_default_shape(fl.arch);
  }
  if (fl.scale != 1.0) shape = scale_shape(shape, fl.scale);
  auto set = [](int64_t& field, const std::optional<int64_t>& v) {
    if (v) field = *v;
  };
  set(shape.hidden, fl.hidden);
  set(shape.layers, fl.layers);
  set(shape.heads, fl.heads);
  set(shape.kv_heads, fl.kv_heads);
  set(shape.head_dim, fl.head_dim);
  set(shape.intermediate, fl.intermediate);
  set(shape.experts, fl.experts);
  set(shape.top_k, fl.top_k);
  set(shape.moe_intermediate, fl.moe_intermediate);
  set(shape.vocab, fl.vocab);
  set(shape.sliding_window, fl.sliding_window);
  set(shape.max_positions, fl.max_positions);

  SynthOptions opt;
  opt.shape = shape;
  opt.bits = fl.bits;
  opt.group_size = fl.group_size;
  opt.seed = fl.seed;
  opt.embed_std = fl.embed_std;
  opt.shard_bytes = static_cast<uint64_t>(fl.shard_mb) << 20;
  opt.tokenizer_from = fl.tokenizer_from.empty() ? std::filesystem::path(LMLAB_DEFAULT_TOKENIZER_DIR)
                                                 : std::filesystem::path(fl.tokenizer_from);
  opt.vocab_from_tokenizer = !fl.vocab.has_value();
  if (!fl.quiet) opt.progress = stderr_progress("synth");
  const SynthResult r = synth_model(fl.out, opt);
  const SynthShape& s = r.shape;
  fmt::print("wrote {}: {} hidden {} layers {} heads {}/{} x {} intermediate {}", fl.out, s.arch, s.hidden, s.layers,
             s.heads, s.kv_heads, s.head_dim, s.intermediate);
  if (s.experts > 0) fmt::print(" experts {} top-{} x {}", s.experts, s.top_k, s.moe_intermediate);
  fmt::print(" vocab {}\n  {:.3f}B parameters ({:.3f}B active), {} bits, {:.1f} MB in {} shard(s)\n", s.vocab,
             r.parameters / 1e9, r.active_parameters / 1e9, fl.bits, r.bytes_written / 1e6, r.shards);
  return 0;
}

}  // namespace

void register_synth(CLI::App& app) {
  auto fl = std::make_shared<Flags>();
  auto* sub = app.add_subcommand("synth", "write a random-weight model of a real architecture and size");
  std::string presets;
  for (const auto& p : synth_preset_names()) presets += (presets.empty() ? "" : ", ") + p;
  sub->add_option("--arch", fl->arch, "llama | qwen3 | qwen3_moe | mixtral | gemma3")
      ->check(CLI::IsMember({"llama", "qwen3", "qwen3_moe", "mixtral", "gemma3"}));
  sub->add_option("--preset", fl->preset, "real model shape: " + presets);
  sub->add_option("--scale", fl->scale, "scale hidden, intermediate sizes and layers (e.g. 0.1 for CPU benchmarks)");
  sub->add_option("--hidden", fl->hidden);
  sub->add_option("--layers", fl->layers);
  sub->add_option("--heads", fl->heads);
  sub->add_option("--kv-heads", fl->kv_heads);
  sub->add_option("--head-dim", fl->head_dim);
  sub->add_option("--intermediate", fl->intermediate);
  sub->add_option("--experts", fl->experts);
  sub->add_option("--top-k", fl->top_k);
  sub->add_option("--moe-intermediate", fl->moe_intermediate);
  sub->add_option("--vocab", fl->vocab, "vocabulary size (default: the tokenizer's)");
  sub->add_option("--sliding-window", fl->sliding_window, "gemma3: window of the local layers")->check(CLI::PositiveNumber);
  sub->add_option("--max-positions", fl->max_positions, "max_position_embeddings")->check(CLI::PositiveNumber);
  sub->add_option("--bits", fl->bits, "16 = bf16; 4 or 8 = MLX affine")->check(CLI::IsMember({4, 8, 16}));
  sub->add_option("--group-size", fl->group_size, "quantization group size")->check(CLI::IsMember({32, 64, 128}));
  sub->add_option("--out", fl->out, "output directory (created; must not exist or be empty)")->required();
  sub->add_option("--seed", fl->seed);
  sub->add_option("--embed-std", fl->embed_std,
                  "std of the token embeddings (others 0.02); ~1 makes a MoE's routing vary with the token as a trained "
                  "router's does, for expert-streaming benchmarks")
      ->capture_default_str();
  sub->add_option("--shard-mb", fl->shard_mb, "MiB of tensor data per safetensors shard")->check(CLI::PositiveNumber);
  sub->add_option("--tokenizer-from", fl->tokenizer_from,
                  "model directory whose tokenizer files are copied (default: the fixtures' coder-dense, " +
                      std::string(LMLAB_DEFAULT_TOKENIZER_DIR) + ")");
  sub->add_flag("--quiet", fl->quiet, "no progress on stderr");
  sub->callback(guarded([fl] { return run_synth(*fl); }));
}

}  // namespace lmlab::cli
