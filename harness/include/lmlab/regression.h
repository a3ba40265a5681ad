// lmlab regression: the prompt-cache and sliding-window regression suite, run against an OpenAI-compatible
// lmlab server over HTTP (a fresh `lmlab serve` subprocess, or a running server at a URL).
//
// Per model of the scenario: long prompt A (>= 5000 tokens) -> short prompt (18) -> long prompt B (shares A's
// first `shared_prefix_tokens`) -> B again (a full prefix hit); then the same four at once from four threads
// (checked to have overlapped in time). Every answer (temperature 0, EOS ignored) must equal the cold
// single-request reference (a server with the prompt cache off, one request at a time); the prompt-cache hit
// count and hit tokens from /metrics must equal what the block size and the prompt lengths give; KV and RSS
// peaks must stay within the scenario's budgets; no request may end in an error. Every check is stored in the
// results database (step, expected, got, pass).
#pragma once

#include <cstdint>
#include <filesystem>
#include <iosfwd>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lmlab/results.h"

namespace lmlab {

struct RegressionSynth {  // a random-weight gemma3 made with the engine's synth (lmlab/synth.h)
  std::string arch = "gemma3";
  int64_t layers = 0, sliding_window = 0, max_positions = 0;  // 0 = the arch's tiny default
  uint64_t seed = 0;
  std::filesystem::path tokenizer_from;  // resolved against the scenario file's folder
};

struct RegressionModel {
  std::string name;
  std::optional<std::filesystem::path> dir;  // a model directory, or
  std::optional<RegressionSynth> synth;      // a model to synthesize into the work directory
};

struct RegressionScenario {
  std::filesystem::path file;
  std::string name, description;
  std::vector<RegressionModel> models;
  int64_t long_tokens = 5200, short_tokens = 18, shared_prefix_tokens = 4000, second_long_tokens = 5300;
  int64_t max_tokens = 16;
  uint64_t seed = 1;
  int64_t block_tokens = 32;  // the server's prompt-cache block (lmlab's kv_block_tokens default)
  // The server under test: `lmlab serve` flags (also the budgets checked).
  int64_t ctx_size = 8192, prefill_size = 512, prompt_cache_mb = 256, kv_budget_mb = 1024, threads = 0;
  int parallel = 4;
  int64_t rss_budget_mb = 2048;
};

// Throws lmlab::Error naming the file and field.
RegressionScenario load_regression_scenario(const std::filesystem::path& file);
RegressionScenario parse_regression_scenario(std::string_view json_text, const std::filesystem::path& file);

struct RegressionSettings {
  std::filesystem::path lmlab_exe;                // runs `serve` for the server under test and the references
  std::optional<std::string> url;                 // a running server instead of a fresh subprocess
  std::vector<std::string> only_models;           // run only these scenario models (with url: exactly one)
  std::optional<std::filesystem::path> references_in, references_out;  // JSON: model -> prompt -> answer
  std::filesystem::path work_dir;                 // where synth models are written (reused when present)
  std::string host, git_commit;
  std::ostream* progress = nullptr;               // lines with an ETA; nullptr = silent
};

struct RegressionOutcome {
  int64_t run_id = 0;
  std::vector<RegressionCheck> checks;
  std::vector<RegressionCheck> failures() const;
};

// Runs the suite and stores a run (scenario name, one sample per request, every check). Throws lmlab::Error
// for what stops it from running at all (bad settings, a model that cannot be made, a reference server
// that does not start); a server under test that fails shows up as failed checks, never as an exception.
RegressionOutcome run_regression(const RegressionScenario& scenario, ResultsStore& store,
                                 const RegressionSettings& settings);

}  // namespace lmlab
