// THE option table: every engine option, declared once. Add an option here (and its member, with its default,
// in lmlab/options.h); the CLI, scenarios, `lmlab info`, /health and the reports pick it up from this table.
#include "options/option_table.h"

#include <algorithm>
#include <limits>
#include <vector>

#include "lmlab/error.h"

namespace lmlab::options_detail {

namespace {

using O = ModelOptions;
constexpr int64_t kMaxMb = int64_t{1} << 30;  // 1 PiB: larger is a typo, and << 20 must not overflow
constexpr int64_t kMaxTokens = std::numeric_limits<int32_t>::max();  // token positions are int32

// Indexed by the enums' values: kv_mode_name and the table's choices are one list.
constexpr std::string_view kDevices[] = {"cpu", "cuda"};
constexpr std::string_view kKvModes[] = {"f32", "turbo", "affine4", "affine8", "f16"};
constexpr std::string_view kCachePolicies[] = {"reuse", "lru"};

OptionSpec integer(std::string_view key, std::string_view flag, int64_t min, int64_t max, std::string_view unit,
                   std::string_view zero_means, std::string_view doc) {
  return {.key = key, .flag = flag, .type = OptionType::integer, .min = min, .max = max, .choices = {}, .unit = unit,
          .zero_means = zero_means, .doc = doc};
}
OptionSpec boolean(std::string_view key, std::string_view flag, std::string_view doc) {
  return {.key = key, .flag = flag, .type = OptionType::boolean, .max = 1, .choices = {}, .unit = {}, .zero_means = {},
          .doc = doc};
}
OptionSpec choice(std::string_view key, std::string_view flag, std::span<const std::string_view> choices,
                  std::string_view doc) {
  return {.key = key, .flag = flag, .type = OptionType::choice, .choices = choices, .unit = {}, .zero_means = {},
          .doc = doc};
}

OptionSpec negated(OptionSpec s) {  // a boolean that defaults to true: its flag turns it off
  s.negated_flag = true;
  return s;
}
OptionSpec test_only(OptionSpec s) {
  s.test_only = true;
  return s;
}

const std::vector<OptionRow>& rows() {
  static const std::vector<OptionRow> table = [] {
    std::vector<OptionRow> t = {
        {choice("device", "--device", kDevices, "compute device"), &O::device},
        {integer("gpu_layers", "--gpu-layers", 0, 1 << 20, "layers", "every layer",
                 "--device cuda: the first N layers on the GPU, the rest on the CPU (models larger than VRAM)"),
         &O::gpu_layers},
        {integer("threads", "--threads", 0, 4096, "", "all hardware threads", "CPU threads"), &O::threads},
        {integer("ctx_size", "--ctx-size", 0, kMaxTokens, "tokens", "the model's max_position_embeddings",
                 "context size"),
         &O::ctx_size},
        {integer("prefill_size", "--prefill-size", 0, kMaxTokens, "tokens", "512 on the CPU, 2048 with --device cuda",
                 "prompt tokens per forward chunk"),
         &O::prefill_size},
        {integer("kv_block_tokens", "--kv-block-tokens", 1, 1 << 16, "tokens", "",
                 "positions per KV block (also the prompt cache's granularity)"),
         &O::kv_block_tokens},
        {integer("kv_budget_mb", "--kv-budget-mb", 0, kMaxMb, "MiB", "unlimited",
                 "KV cache budget of all sessions and the prompt cache"),
         &O::kv_budget_mb},
        {integer("prompt_cache_mb", "--prompt-cache-mb", 0, kMaxMb, "MiB", "off", "prompt (prefix) cache budget"),
         &O::prompt_cache_mb},
        {choice("kv_mode", "--kv-mode", kKvModes, "KV storage of full-attention layers (docs/turboquant.md)"),
         &O::kv_mode},
        {integer("kv_k_bits", "--kv-k-bits", 2, 5, "bits", "", "turbo: Lloyd-Max bits of K"), &O::kv_k_bits},
        {boolean("kv_k_qjl", "--kv-k-qjl",
                 "turbo: 1-bit QJL correction of K's residual (the paper's 4.25-bit K with --kv-k-bits 3)"),
         &O::kv_k_qjl},
        {integer("kv_v_bits", "--kv-v-bits", 2, 5, "bits", "", "turbo: Lloyd-Max bits of V"), &O::kv_v_bits},
        {integer("kv_hot_window", "--kv-hot-window", 0, kMaxTokens, "tokens", "every token compressed",
                 "compressed KV: the most recent positions kept exact"),
         &O::kv_hot_window},
        {boolean("stream_experts", "--stream-experts",
                 "MoE experts stay on disk and are read (O_DIRECT) into a budgeted cache"),
         &O::stream_experts},
        {integer("expert_cache_mb", "--expert-cache-mb", 0, kMaxMb, "MiB",
                 "a quarter of the experts' bytes, at least one expert", "streamed-expert cache budget"),
         &O::expert_cache_mb},
        {integer("expert_queue_depth", "--expert-queue-depth", 1, 4096, "", "", "expert reads in flight"),
         &O::expert_queue_depth},
        {negated(boolean("expert_predict_next", "--no-expert-predict",
                         "read ahead the next MoE layer's likely experts")),
         &O::expert_predict_next},
        {choice("expert_cache_policy", "--expert-cache-policy", kCachePolicies,
                "expert cache eviction (docs/expert-streaming.md)"),
         &O::expert_cache_policy},
        {test_only(integer("debug_token_delay_us", "--debug-token-delay-us", 0, 10'000'000, "us", "no delay",
                           "TEST ONLY: sleep this long per decoded token inside generate (slow server requests)")),
         &O::debug_token_delay_us},
    };
    return t;
  }();
  return table;
}

}  // namespace

std::span<const OptionRow> option_rows() { return rows(); }

const OptionRow& row_of(const OptionSpec& spec) {
  for (const OptionRow& r : rows())
    if (r.spec.key == spec.key) return r;
  throw Error(ErrorKind::internal, std::string(spec.key), "not an engine option");
}

}  // namespace lmlab::options_detail

namespace lmlab {

std::span<const OptionSpec> engine_options() {
  static const std::vector<OptionSpec> specs = [] {
    std::vector<OptionSpec> v;
    for (const auto& r : options_detail::option_rows()) v.push_back(r.spec);
    return v;
  }();
  return specs;
}

std::span<const OptionAlias> engine_option_aliases() {
  static constexpr OptionAlias kAliases[] = {
      {"--turbo-kv", "kv_mode", "turbo", "TurboQuant-compressed KV cache (same as --kv-mode turbo)"},
  };
  return kAliases;
}

std::string_view kv_mode_name(KvMode mode) {
  return options_detail::kKvModes[static_cast<size_t>(mode)];
}

KvMode kv_mode_from_name(std::string_view name) {
  const OptionSpec& spec = engine_option("kv_mode");
  ModelOptions o;
  set_option(o, spec, std::string(name));
  return o.kv_mode;
}

}  // namespace lmlab
