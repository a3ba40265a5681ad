// Shapes for `lmlab synth`: presets copied from the public config.json of real checkpoints, tiny defaults per
// architecture, and the --scale rule.
//
// Presets (hidden / layers / heads / kv heads / head_dim / intermediate / experts x moe_intermediate, top-k /
// vocab):
//   llama-3-8b          Meta-Llama-3-8B: 4096 / 32 / 32 / 8 / 128 / 14336 / - / 128256, rope 500000, untied.
//   qwen3-8b            Qwen3-8B: 4096 / 36 / 32 / 8 / 128 / 12288 / - / 151936, rope 1e6, untied.
//   qwen3-30b-a3b       Qwen3-30B-A3B: 2048 / 48 / 32 / 4 / 128 / 6144 / 128 x 768, top-8 / 151936 (30.5B total,
//                       3.3B active).
//   qwen3.5-122b-a10b-like  a qwen3_moe stand-in for Qwen3.5-122B-A10B, whose gated-DeltaNet (linear
//                       attention) layers and shared expert lmlab does not implement: every layer is full
//                       attention, no shared expert. Assumed: 3072 / 48 / 32 / 2 / 256 / 12288 /
//                       256 x 1024, top-8 / 248320, rope 1e7 (about 120B total, 7B active: the weight bytes
//                       and the per-token expert traffic of the real model, not its attention cost).
//   gemma-3-27b-like    gemma-3-27b-it's text model (the vision tower is omitted): 5376 / 62 / 32 / 16 / 128 /
//                       21504 / - / 262208, query_pre_attn_scalar 168, sliding window 1024 on 5 of every 6
//                       layers, rope 1e6 (linear x8) global and 1e4 local, tied.
//   mixtral-8x7b        Mixtral-8x7B-v0.1: 4096 / 32 / 32 / 8 / 128 / 14336 / 8 x 14336, top-2 / 32000.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "lmlab/error.h"
#include "lmlab/synth.h"

namespace lmlab {

namespace {

struct Preset {
  const char* name;
  SynthShape shape;
};

SynthShape make(const char* arch, int64_t hidden, int64_t layers, int64_t heads, int64_t kv, int64_t head_dim,
                int64_t inter, int64_t vocab, double rope_theta, int64_t max_pos, double eps, bool tied) {
  SynthShape s;
  s.arch = arch;
  s.hidden = hidden;
  s.layers = layers;
  s.heads = heads;
  s.kv_heads = kv;
  s.head_dim = head_dim;
  s.intermediate = inter;
  s.vocab = vocab;
  s.rope_theta = rope_theta;
  s.max_positions = max_pos;
  s.norm_eps = eps;
  s.tied_embeddings = tied;
  return s;
}

SynthShape moe(SynthShape s, int64_t experts, int64_t top_k, int64_t moe_inter) {
  s.experts = experts;
  s.top_k = top_k;
  s.moe_intermediate = moe_inter;
  return s;
}

SynthShape gemma(SynthShape s, int64_t window, int64_t pattern, double qpas, double rope_factor = 1.0) {
  s.rope_linear_factor = rope_factor;
  s.sliding_window = window;
  s.sliding_window_pattern = pattern;
  s.query_pre_attn_scalar = qpas;
  return s;
}

const std::vector<Preset>& presets() {
  static const std::vector<Preset> p = {
      {"llama-3-8b", make("llama", 4096, 32, 32, 8, 128, 14336, 128256, 500000.0, 8192, 1e-5, false)},
      {"qwen3-8b", make("qwen3", 4096, 36, 32, 8, 128, 12288, 151936, 1e6, 40960, 1e-6, false)},
      {"qwen3-30b-a3b", moe(make("qwen3_moe", 2048, 48, 32, 4, 128, 6144, 151936, 1e6, 40960, 1e-6, false), 128, 8, 768)},
      {"qwen3.5-122b-a10b-like",
       moe(make("qwen3_moe", 3072, 48, 32, 2, 256, 12288, 248320, 1e7, 262144, 1e-6, false), 256, 8, 1024)},
      {"gemma-3-27b-like", gemma(make("gemma3", 5376, 62, 32, 16, 128, 21504, 262208, 1e6, 131072, 1e-6, true), 1024, 6, 168.0, 8.0)},
      {"mixtral-8x7b", moe(make("mixtral", 4096, 32, 32, 8, 128, 14336, 32000, 1e6, 32768, 1e-5, false), 8, 2, 14336)},
  };
  return p;
}

int64_t round_to(double v, int64_t multiple) {
  return std::max<int64_t>(multiple, static_cast<int64_t>(std::llround(v / static_cast<double>(multiple))) * multiple);
}

}  // namespace

std::vector<std::string> synth_preset_names() {
  std::vector<std::string> out;
  for (const auto& p : presets()) out.emplace_back(p.name);
  return out;
}

SynthShape synth_preset(std::string_view name) {
  for (const auto& p : presets())
    if (name == p.name) return p.shape;
  std::string known;
  for (const auto& n : synth_preset_names()) known += (known.empty() ? "" : ", ") + n;
  throw Error(ErrorKind::invalid_input, "--preset", fmt::format("unknown preset '{}' (known: {})", name, known));
}

SynthShape synth_default_shape(std::string_view arch) {
  if (arch == "llama") return make("llama", 256, 2, 4, 2, 64, 512, 4096, 500000.0, 4096, 1e-5, false);
  if (arch == "qwen3") return make("qwen3", 256, 2, 4, 2, 64, 512, 4096, 1e6, 4096, 1e-6, true);
  if (arch == "qwen3_moe") return moe(make("qwen3_moe", 256, 2, 4, 2, 64, 512, 4096, 1e6, 4096, 1e-6, false), 8, 2, 128);
  if (arch == "mixtral") return moe(make("mixtral", 256, 2, 4, 2, 64, 256, 4096, 1e6, 4096, 1e-5, false), 4, 2, 256);
  if (arch == "gemma3") return gemma(make("gemma3", 256, 3, 4, 2, 64, 512, 4096, 1e6, 4096, 1e-6, true), 16, 3, 64.0);
  throw Error(ErrorKind::invalid_input, "--arch",
              fmt::format("unknown architecture '{}' (llama, qwen3, qwen3_moe, mixtral, gemma3)", arch));
}

SynthShape scale_shape(const SynthShape& in, double f) {
  if (!(f > 0.0)) throw Error(ErrorKind::invalid_input, "--scale", "must be positive");
  if (in.kv_heads <= 0 || in.heads % in.kv_heads != 0)
    throw Error(ErrorKind::invalid_input, "--scale", "the shape's heads are not a multiple of its KV heads");
  SynthShape s = in;
  // Heads follow the width, keeping the grouped-query ratio; a model whose width is heads * head_dim keeps that.
  const int64_t group = in.heads / in.kv_heads;
  s.kv_heads = std::max<int64_t>(1, std::llround(static_cast<double>(in.kv_heads) * f));
  s.heads = s.kv_heads * group;
  s.hidden = round_to(static_cast<double>(in.hidden) * f, 128);
  if (in.hidden == in.heads * in.head_dim && (s.heads * s.head_dim) % 128 == 0) s.hidden = s.heads * s.head_dim;
  s.intermediate = round_to(static_cast<double>(in.intermediate) * f, 128);
  if (in.moe_intermediate > 0) s.moe_intermediate = round_to(static_cast<double>(in.moe_intermediate) * f, 128);
  s.layers = std::max<int64_t>(1, std::llround(static_cast<double>(in.layers) * f));
  if (in.query_pre_attn_scalar > 0) s.query_pre_attn_scalar = static_cast<double>(s.hidden) / static_cast<double>(s.heads);
  return s;
}

uint64_t SynthShape::parameter_count() const {
  const uint64_t H = hidden, q = heads * head_dim, kv = kv_heads * head_dim;
  const bool is_moe = experts > 0;
  uint64_t layer = H * (2 * q + 2 * kv) + 4 * H;  // projections and norms (an upper bound of 4)
  layer += is_moe ? experts * 3 * H * moe_intermediate + experts * H : 3 * H * intermediate;
  return layers * layer + vocab * H * (tied_embeddings ? 1 : 2) + H;
}

uint64_t SynthShape::active_parameter_count() const {
  if (experts <= 0) return parameter_count();
  return parameter_count() - layers * (experts - top_k) * 3 * hidden * moe_intermediate;
}

}  // namespace lmlab
