// lmlab harness: the lab's scenario runner. Parses scenario files (JSON: configs x contexts x repetitions)
// and runs them in process on the engine, through `lmlab serve` subprocesses or against any OpenAI-compatible
// URL (RunMode), storing one raw results Sample per (config, context, repetition); `lmlab compare` runs the
// same prompts on several runtimes. The regression suite lives in lmlab/regression.h.
//
// Invariants:
// - A scenario file is checked whole before anything runs; every problem is an lmlab::Error naming the file
//   and the field (e.g. "scenarios/default.json: field 'configs[1].options.kv_k_bits'").
// - Only raw numbers are recorded (tokens, nanoseconds, bytes); results/ does the arithmetic.
// - A failed generation (a context over ctx_size, a config the model cannot run) is recorded as a Sample
//   with `error` set, and the run goes on. Only a results-store failure stops a run.
#pragma once

#include <cstdint>
#include <filesystem>
#include <iosfwd>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lmlab/gate.h"
#include "lmlab/model.h"
#include "lmlab/results.h"

namespace lmlab {

// How each sample's prompt of exactly `context` tokens is built (deterministic either way).
struct PromptSource {
  enum class Kind {
    random_ids,  // ids drawn uniformly from [0, vocab) by mt19937_64(seed): cheap, no tokenizer needed
    text_file,   // the file tokenized once (no special tokens), repeated and cut to `context`: real routing
  };
  Kind kind = Kind::random_ids;
  uint64_t seed = 42;
  std::filesystem::path text_file;  // absolute, or relative to the working directory
};

// The four named configurations (SwiftLM's names). A config's preset fixes kv_mode and stream_experts.
enum class ConfigPreset {
  vanilla,    // f32 KV, all weights in memory
  ssd,        // MoE experts streamed from disk into a budgeted expert cache (MoE models only)
  turbo,      // TurboQuant-compressed KV cache
  ssd_turbo,  // both
};

struct BenchConfig {
  std::string name;  // the config's name in the results ("vanilla", "ssd", ... or a custom one)
  ConfigPreset preset = ConfigPreset::vanilla;
  ModelOptions options;  // defaults <- scenario "options" <- preset <- the config's own "options"
};

// Optional quality measurement: each config evaluates held-out token sequences teacher-forced (after the
// speed sweep, so it never inflates the speed samples' memory), recording its perplexity and the KL divergence
// of its next-token distributions from the vanilla config's (Evaluation).
struct QualitySpec {
  std::filesystem::path golden;  // a golden .safetensors holding eval_ids_0, eval_ids_1, ... (int32)
  int64_t sequences = 1;         // how many of them
  int64_t max_tokens = 0;        // 0 = each sequence whole, else its first max_tokens tokens
};

// A published sweep set beside the report's "Decode relative to <baseline>" table (scenario "reference", issue 11):
// per config, per context, that sweep's decode tok/s over its own baseline's. Checked against the scenario's
// configs and contexts, so it holds configs x contexts entries at most; recorded with the run (reference_json).
struct DecodeReference {
  std::string name;         // e.g. "SwiftLM": heads its columns ("SwiftLM 512"); 1 to 32 characters
  std::string description;  // what was measured where; at most 300 characters, may be empty
  // The scenario's first config as written: what the ratios are over (bench --configs may reorder the configs).
  std::string baseline;
  std::map<std::string, std::map<int64_t, double>> decode_ratios;  // config (not the baseline) -> context -> (0, 1000]
};

struct Scenario {
  std::filesystem::path file;  // where it was read from (names errors)
  std::string name;
  std::string description;
  std::optional<std::filesystem::path> model;  // resolved against the scenario file's folder
  std::vector<int64_t> contexts;
  int64_t repetitions = 3;
  int64_t decode_tokens = 32;
  PromptSource prompt;
  std::vector<BenchConfig> configs;
  // true: every model is loaded first and the samples run context by context, repetition by repetition, config by
  // config, so that a change of the machine's load hits every config alike (ratios between configs stay sound).
  bool interleave = false;
  int64_t perplexity_tokens = 0;  // > 0: each config's perplexity on the first N tokens of the prompt source
  GatePolicy gate;                // the scenario's "gate" thresholds (defaults when absent)
  // Quality per config (perplexity and KL divergence from vanilla on the golden file's held-out sequences).
  // At most one of perplexity_tokens and quality: a run holds one set of evaluations.
  std::optional<QualitySpec> quality;
  std::optional<DecodeReference> reference;  // the scenario's "reference", when it has one
};

// Throws lmlab::Error naming the file and field.
Scenario load_scenario(const std::filesystem::path& file);
// `file` names errors and anchors relative paths (model, prompt text file).
Scenario parse_scenario(std::string_view json_text, const std::filesystem::path& file);

std::string_view preset_name(ConfigPreset preset);
// The options as JSON text (every field, stable key names: the ones scenario "options" accept).
std::string model_options_json(const ModelOptions& options);
// The scenario's reference as a run records it (engine config "reference") and `lmlab report --reference` passes it
// on: {"name", "description", "baseline", "decode_ratios": {config: {"<context>": ratio}}}; "null" without one.
std::string reference_json(const Scenario& scenario);

// Command-line overrides of a scenario (`lmlab bench --model --contexts --reps ...`). Unset = keep.
struct ScenarioOverrides {
  std::optional<std::filesystem::path> model;
  std::optional<std::vector<int64_t>> contexts;
  std::optional<int64_t> repetitions;
  std::optional<int64_t> decode_tokens;
  std::optional<int64_t> ctx_size;  // applied to every config
  std::optional<int> threads;       // applied to every config
  std::optional<std::vector<std::string>> configs;  // keep only these, in this order
  bool no_quality = false;                          // drop the scenario's evaluations (quality, perplexity_tokens)
};
// Throws lmlab::Error naming the flag when an override is invalid (e.g. an unknown config name).
void apply_overrides(Scenario& scenario, const ScenarioOverrides& overrides);

// Where a scenario runs (docs in scenarios/README.md): the engine in this process; an `lmlab serve` subprocess
// per config (its options as serve flags), measured over HTTP; or any OpenAI-compatible server at a URL (one
// pass named "url": the server's configuration is its own). Over HTTP every figure comes from the SSE stream.
enum class RunMode { in_process, serve, url };
std::string_view run_mode_name(RunMode mode);            // "in-process", "serve", "url"
RunMode run_mode_from_name(std::string_view name);       // throws invalid_input naming --mode

struct RunSettings {
  std::string host;        // empty = this machine's host name
  std::string git_commit;  // recorded as is; empty = the binary's own (build_info().git_commit)
  std::string host_fingerprint;  // empty = this machine's (host_fingerprint(probe_environment()))
  std::string environment_json;  // empty = probe_environment() of this machine, as JSON
  std::ostream* progress = nullptr;  // one line per sample with an ETA; nullptr = silent
  RunMode mode = RunMode::in_process;
  std::string url;                      // RunMode::url: the server's root, e.g. http://127.0.0.1:8080
  std::filesystem::path lmlab_exe;      // RunMode::serve (and compare's serve runtimes): the lmlab executable
};

struct RunOutcome {
  int64_t run_id = 0;
  int64_t samples = 0;
  int64_t errors = 0;  // samples recorded with `error` set
  int64_t quality_errors = 0;  // configs whose quality evaluation failed (named on the progress stream)
};

// Runs every config x context x repetition and records the samples into `store` (one run). The model is
// loaded once per config and reused across its contexts and repetitions (each sample gets a fresh session).
// Then, when the scenario asks for quality, each config's Evaluations (see QualitySpec). The run records this
// machine's environment and the binary's commit unless `settings` gives them.
// Throws lmlab::Error before the run starts when the scenario has no model, the model directory has no
// safetensors files or the quality golden file lacks a sequence; lmlab::Error (io) when the store fails.
RunOutcome run_scenario(const Scenario& scenario, ResultsStore& store, const RunSettings& settings);

// `lmlab compare`: the same scenario prompts on several runtimes, side by side in one run whose samples carry
// the runtime's name as their config. A runtime is NAME=lmlab (the engine in process), NAME=serve (an lmlab
// serve subprocess) or NAME=http://HOST:PORT (any OpenAI-compatible server); lmlab runtimes use the scenario's
// first config. Each runtime's name, kind, target and version are stored (ResultsStore::runtimes).
struct RuntimeSpec {
  std::string name;
  RunMode mode = RunMode::in_process;
  std::string url;  // RunMode::url
};
RuntimeSpec parse_runtime_spec(const std::string& text);  // throws invalid_input naming --runtime
RunOutcome run_compare(const Scenario& scenario, const std::vector<RuntimeSpec>& runtimes, ResultsStore& store,
                       const RunSettings& settings);

// Helpers the CLI also uses.
std::string host_name();

// What this binary was built from, compiled in at build time (cmake/build_info.cmake): `git describe
// --always --dirty` of the source tree, the compiler and the CMake build type. Never runs git at run time.
struct BuildInfo {
  std::string git_commit;
  std::string compiler;    // e.g. "GNU 13.2.0"
  std::string build_type;  // e.g. "Release"
};
const BuildInfo& build_info();

// The machine a run is measured on. Read from files only (no process is started), each read bounded; a file
// that is absent or unreadable leaves its fields empty (e.g. no GPU).
struct Environment {
  std::string cpu_model;               // /proc/cpuinfo "model name"
  std::string cpu_isa;                 // lmlab::cpu_kernels_isa() of this process (not read from `root`)
  int64_t cores = 0;                   // logical CPUs in /proc/cpuinfo
  int64_t ram_bytes = 0;               // /proc/meminfo MemTotal
  std::vector<std::string> gpus;       // /proc/driver/nvidia/gpus/*/information "Model"
  std::string gpu_driver;              // /proc/driver/nvidia/version, the kernel module's version
  std::string os;                      // /etc/os-release PRETTY_NAME
  std::string kernel;                  // /proc/sys/kernel/osrelease
  BuildInfo build;                     // this binary's
};
// `root` prefixes every path read ("/" for this machine; tests pass a fake tree).
Environment probe_environment(const std::filesystem::path& root = "/");
// As a JSON object (keys: cpu_model, cpu_isa, cores, ram_bytes, gpus, gpu_driver, os, kernel, compiler,
// build_type, git_commit): what RunInfo.environment_json holds and the reports read.
std::string environment_json(const Environment& env);
// What decides whether absolute times of two runs compare: "cpu=<model name>; isa=<cpu_isa>; cpus=<usable CPUs>;
// mem=<GiB>" (usable CPUs: this process's affinity, not the environment's core count; the ISA because virtual
// machines of one model name may offer different vector units, and the kernels' float order follows the ISA).
// Recorded as RunInfo.host_fingerprint.
std::string host_fingerprint(const Environment& env);
std::string host_fingerprint();  // this machine's
// Bytes of the *.safetensors files in a model directory (their real size on disk).
int64_t safetensors_bytes(const std::filesystem::path& model_dir);

}  // namespace lmlab
