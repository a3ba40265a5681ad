// The engine's options (ModelOptions) and the one table that describes them. Each option is declared once, in
// engine/src/options/option_table.cpp: its key (the ModelOptions member, the scenario key and the JSON field of
// `lmlab info`, /health and the results database), its CLI flag, type, range or choices, default (the member's
// initializer below), unit, what 0 means, and a one-line doc. Everything that reads or shows options (the CLI
// flags of every engine-running subcommand, scenario parsing, `lmlab info`, /health, the report's config
// descriptions) is generated from the table, and values are checked against it in one place: set_option.
// A test fails when a table option is defined anywhere else (tests/options_test.cpp).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <variant>

namespace lmlab {

enum class Device { cpu, cuda };

// Storage of the KV cache of full-attention layers (sliding-window layers are small and stay f32).
enum class KvMode {
  f32,      // exact (paged blocks, shared through the prompt cache)
  turbo,    // TurboQuant: K = k_bits Lloyd-Max (+ 1-bit QJL residual), V = v_bits Lloyd-Max
  affine4,  // per-token, per-head affine int4 (the baseline TurboQuant is compared with)
  affine8,  // per-token, per-head affine int8
  f16,      // fp16 rows in the same blocked layout and attention kernels as turbo: the speed baseline
};

// The --kv-mode spellings ("f32", "turbo", ...), from the option table's kv_mode choices; kv_mode_from_name
// throws invalid_input naming the flag and the value.
std::string_view kv_mode_name(KvMode mode);
KvMode kv_mode_from_name(std::string_view name);
inline constexpr KvMode kAllKvModes[] = {KvMode::f32, KvMode::turbo, KvMode::affine4, KvMode::affine8, KvMode::f16};

// What --prefill-size 0 (the default) means on a device, in one place (model loading, the gate's comparison of
// recorded configs): 512 prompt tokens a forward on the CPU, 2048 on a GPU. On the H100 (docs/cuda.md, twenty-first
// session) chunks of 2048 prefilled a 16K prompt 1.30x (qwen3-8b 4-bit) and 1.21x (qwen3-30b-a3b 4-bit) faster than
// chunks of 512: a 4-bit weight is dequantized once per chunk and an expert's slot tiles fill up; 4096 gained 4-5%
// more for twice the activations. The CPU's chunk stays where its tests and measurements are.
inline constexpr int64_t kCpuPrefillSize = 512, kGpuPrefillSize = 2048;
int64_t effective_prefill_size(int64_t requested, Device device);

// Defaults here are the table's defaults; ranges and docs are in the table. Sizes the user gives are in MiB
// (_mb); the engine converts them to _bytes once, where it resolves defaults.
struct ModelOptions {
  Device device = Device::cpu;
  int64_t gpu_layers = 0;  // 0: every layer on the device
  int threads = 0;
  int64_t ctx_size = 0;
  int64_t prefill_size = 0;  // 0: effective_prefill_size(); Model::options() has it resolved
  int64_t kv_block_tokens = 32;
  int64_t kv_budget_mb = 0;
  int64_t prompt_cache_mb = 0;
  KvMode kv_mode = KvMode::f32;
  // TurboQuant defaults: K 5 bits, V 4 bits, no QJL, every token compressed (5.125 + 4.125 bits/dim at head_dim
  // 128 = 0.289x fp16): the smallest format within +1% perplexity and 97% greedy agreement on the coder models;
  // the paper's 4.25 / 3.125-bit format (K 3 bits + QJL, V 3 bits) costs +6-7% there (docs/turboquant.md).
  int kv_k_bits = 5;
  bool kv_k_qjl = false;
  int kv_v_bits = 4;
  int64_t kv_hot_window = 0;
  bool stream_experts = false;
  int64_t expert_cache_mb = 0;  // 0: resolve_expert_cache_bytes (experts/expert_cache_budget.h)
  int expert_queue_depth = 8;
  bool expert_predict_next = true;
  std::string expert_cache_policy = "reuse";
  int64_t debug_token_delay_us = 0;  // test-only
};

enum class OptionType { integer, boolean, choice };

// One row of the table. Plain data, so that tools (the CLI, the harness, the report) can render it.
struct OptionSpec {
  std::string_view key;   // ModelOptions member = scenario key = JSON field
  std::string_view flag;  // CLI flag, "--" + key with '-' for '_' unless history says otherwise
  OptionType type = OptionType::integer;
  int64_t min = 0, max = 0;                  // integer: the accepted range
  std::span<const std::string_view> choices;  // choice: the accepted values
  std::string_view unit;                      // integer: "MiB", "tokens", "us", "bits", "" (shown after values)
  std::string_view zero_means;                // integer: what 0 stands for ("" = plain 0)
  std::string_view doc;
  bool negated_flag = false;  // boolean shown as a flag that sets it false (--no-expert-predict)
  bool test_only = false;     // for tests only; hidden from `lmlab info`'s option list
};

// A flag that stands for another option's value (--turbo-kv = --kv-mode turbo).
struct OptionAlias {
  std::string_view flag, key, value, doc;
};

using OptionValue = std::variant<int64_t, bool, std::string>;

std::span<const OptionSpec> engine_options();
std::span<const OptionAlias> engine_option_aliases();
// The row of `key`, or nullptr.
const OptionSpec* find_engine_option(std::string_view key);
// The row of `key`; an unknown key is a bug in the caller (Error internal).
const OptionSpec& engine_option(std::string_view key);
// The CLI flag of `key`, for messages ("lower --ctx-size").
std::string_view option_flag(std::string_view key);

OptionValue get_option(const ModelOptions& options, const OptionSpec& spec);
// Checks value against the row (type, range, choices) and stores it. Throws invalid_input naming `where`
// (the flag when empty), e.g. "--kv-k-bits: 7 is outside [2, 5]".
void set_option(ModelOptions& options, const OptionSpec& spec, const OptionValue& value, std::string_view where = {});
// Parses command-line text for the row (integers in decimal; booleans true/false/1/0); same errors as set_option.
OptionValue parse_option_text(const OptionSpec& spec, std::string_view text, std::string_view where = {});
// Every option against its row; the first failure is an invalid_input naming the flag. Model::load calls it.
void validate_options(const ModelOptions& options);

// A value as a person reads it: "5 MiB", "every token compressed" (zero_means), "turbo", "true".
std::string describe_option_value(const OptionSpec& spec, const OptionValue& value);
std::string describe_option_default(const OptionSpec& spec);
// Every option as one JSON object {"key": value, ...} (test-only options included): what `lmlab info`, /health
// and the results database record.
std::string options_to_json_text(const ModelOptions& options);

}  // namespace lmlab
