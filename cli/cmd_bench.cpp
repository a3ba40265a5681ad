// lmlab bench SCENARIO [--db results/lmlab.db] [--model DIR] [--contexts 512,4096] [--reps N]
//   [--decode-tokens N] [--ctx-size N] [--threads N] [--configs vanilla,turbo] [--no-quality]
//   [--mode in-process|serve|url] [--url URL]: runs a scenario file (in process, through lmlab serve subprocesses,
// or against a server) and stores one sample per (config, context, repetition) in the results database, with
// this machine's environment and the commit compiled into this binary (git is never run: the working directory
// may be anything). Progress with an ETA on stderr; the run id alone on stdout (for scripts). Exit 0 when the
// run completed with at least one successful sample.
#include <fmt/format.h>

#include <filesystem>
#include <iostream>

#include "common.h"
#include "lab_flags.h"
#include "lmlab/harness.h"

namespace lmlab::cli {

namespace {

struct Flags {
  std::string scenario;
  std::string db = "results/lmlab.db";
  ScenarioFlags overrides;
  std::string host;
  std::string mode = "in-process", url;
  bool no_quality = false;
};

int run_bench(const Flags& fl) {
  Scenario scenario = load_scenario(fl.scenario);
  ScenarioOverrides overrides = fl.overrides.overrides();
  overrides.no_quality = fl.no_quality;
  apply_overrides(scenario, overrides);
  RunSettings settings;
  settings.host = fl.host;  // the commit and the environment: this binary's and this machine's
  settings.progress = &std::cerr;
  settings.mode = run_mode_from_name(fl.mode);
  settings.url = fl.url;
  settings.lmlab_exe = std::filesystem::read_symlink("/proc/self/exe");
  if (settings.mode == RunMode::url && fl.url.empty())
    throw Error(ErrorKind::invalid_input, "--url", "--mode url needs the server's URL");
  if (settings.mode != RunMode::url && !fl.url.empty())
    throw Error(ErrorKind::invalid_input, "--url", "only means something with --mode url");
  RunOutcome outcome;
  with_results_db(fl.db, [&](ResultsStore& store) {
    outcome = run_scenario(scenario, store, settings);
    return 0;
  });
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
  fl->overrides.add_to(*sub, /*with_configs=*/true);
  sub->add_option("--host", fl->host, "host name to record (default: this machine's)");
  sub->add_option("--mode", fl->mode, "in-process | serve (an lmlab serve per config) | url (--url)")
      ->check(CLI::IsMember({"in-process", "serve", "url"}))
      ->capture_default_str();
  sub->add_option("--url", fl->url, "with --mode url: an OpenAI-compatible server's root, e.g. http://127.0.0.1:8080");
  sub->add_flag("--no-quality", fl->no_quality, "skip the scenario's quality measurement (perplexity, KL)");
  sub->callback(guarded([fl] { return run_bench(*fl); }));
}

}  // namespace lmlab::cli
