// lmlab bench SCENARIO [--db results/lmlab.db] [--model DIR] [--contexts 512,4096] [--reps N]
//   [--decode-tokens N] [--ctx-size N] [--threads N] [--configs vanilla,turbo] [--no-quality]: runs a scenario
// file in process and stores one sample per (config, context, repetition) in the results database, with this
// machine's environment and the commit compiled into this binary (git is never run: the working directory
// may be anything). Progress with an ETA on stderr; the run id alone on stdout (for scripts). Exit 0 when the run completed with at least one successful sample.
#include <fmt/format.h>

#include <filesystem>
#include <iostream>

#include "common.h"
#include "lmlab/harness.h"

namespace lmlab::cli {

namespace {

struct Flags {
  std::string scenario;
  std::string db = "results/lmlab.db";
  std::string model;
  std::vector<int64_t> contexts;
  std::vector<std::string> configs;
  int64_t reps = 0, decode_tokens = 0, ctx_size = -1;
  int threads = -1;
  std::string host;
  bool no_quality = false;
};

ScenarioOverrides overrides_of(const Flags& fl) {
  ScenarioOverrides o;
  if (!fl.model.empty()) o.model = std::filesystem::absolute(fl.model).lexically_normal();
  if (!fl.contexts.empty()) o.contexts = fl.contexts;
  if (!fl.configs.empty()) o.configs = fl.configs;
  if (fl.reps != 0) o.repetitions = fl.reps;
  if (fl.decode_tokens != 0) o.decode_tokens = fl.decode_tokens;
  if (fl.ctx_size >= 0) o.ctx_size = fl.ctx_size;
  if (fl.threads >= 0) o.threads = fl.threads;
  o.no_quality = fl.no_quality;
  return o;
}

int run_bench(const Flags& fl) {
  Scenario scenario = load_scenario(fl.scenario);
  apply_overrides(scenario, overrides_of(fl));
  const std::filesystem::path db(fl.db);
  if (db.has_parent_path()) std::filesystem::create_directories(db.parent_path());
  RunOutcome outcome;
  try {
    ResultsStore store = ResultsStore::open(fl.db);
    RunSettings settings;
    settings.host = fl.host;  // the commit and the environment: this binary's and this machine's
    settings.progress = &std::cerr;
    outcome = run_scenario(scenario, store, settings);
  } catch (const ResultsError& e) {
    throw Error(ErrorKind::io, "--db " + fl.db, e.what());
  }
  fmt::print(stderr, "lmlab bench: run {} stored in {}: {} samples, {} failed{}\n", outcome.run_id, fl.db,
             outcome.samples, outcome.errors,
             outcome.quality_errors ? fmt::format(", quality failed for {} configs", outcome.quality_errors) : "");
  fmt::print("{}\n", outcome.run_id);
  return outcome.errors == outcome.samples ? 1 : 0;
}

}  // namespace

void register_bench(CLI::App& app) {
  auto fl = std::make_shared<Flags>();
  auto* sub = app.add_subcommand("bench", "run a scenario file; store the samples in the results database");
  sub->add_option("scenario", fl->scenario, "scenario file (JSON), e.g. scenarios/default.json")->required();
  sub->add_option("--db", fl->db, "results database (created if absent)")->capture_default_str();
  sub->add_option("--model", fl->model, "model directory (overrides the scenario's \"model\")");
  sub->add_option("--contexts", fl->contexts, "context lengths in tokens (overrides the scenario's)")->delimiter(',');
  sub->add_option("--reps", fl->reps, "repetitions per config and context (overrides the scenario's)");
  sub->add_option("--decode-tokens", fl->decode_tokens, "tokens decoded per sample (overrides the scenario's)");
  sub->add_option("--ctx-size", fl->ctx_size, "engine context size for every config (0 = the model's maximum)");
  sub->add_option("--threads", fl->threads, "CPU threads for every config (0 = all)");
  sub->add_option("--configs", fl->configs, "run only these configs of the scenario, in this order")->delimiter(',');
  sub->add_option("--host", fl->host, "host name to record (default: this machine's)");
  sub->add_flag("--no-quality", fl->no_quality, "skip the scenario's quality measurement (perplexity, KL)");
  sub->callback(guarded([fl] { return run_bench(*fl); }));
}

}  // namespace lmlab::cli
