// lmlab compare SCENARIO --runtime NAME=lmlab|serve|URL ... [--db FILE] [--model DIR] [--contexts ...] [--reps N]
//   [--decode-tokens N]: the scenario's prompts on several runtimes side by side (lmlab/harness.h run_compare),
// stored as one run; prints the comparison table (ANSI, or markdown with --format md) and the run id last.
#include <fmt/format.h>
#include <unistd.h>

#include <filesystem>
#include <iostream>

#include "common.h"
#include "lab_flags.h"
#include "lmlab/harness.h"
#include "lmlab/report.h"

namespace lmlab::cli {

namespace {

struct Flags {
  std::string scenario, db = "results/lmlab.db", host, format = "ansi";
  std::vector<std::string> runtimes;
  ScenarioFlags overrides;
};

int run_compare_cmd(const Flags& fl) {
  Scenario scenario = load_scenario(fl.scenario);
  apply_overrides(scenario, fl.overrides.overrides());
  std::vector<RuntimeSpec> runtimes;
  for (const auto& r : fl.runtimes) runtimes.push_back(parse_runtime_spec(r));
  RunSettings settings;
  settings.host = fl.host;
  settings.git_commit = build_info().git_commit;
  settings.progress = &std::cerr;
  settings.lmlab_exe = std::filesystem::read_symlink("/proc/self/exe");
  return with_results_db(fl.db, [&](ResultsStore& store) {
    const RunOutcome outcome = run_compare(scenario, runtimes, store, settings);
    const RunInfo run = *store.run(outcome.run_id);
    const auto samples = store.samples(outcome.run_id);
    const auto rts = store.runtimes(outcome.run_id);
    const bool color = ::isatty(STDOUT_FILENO) && !std::getenv("NO_COLOR");
    fmt::print("{}", fl.format == "md" ? render_compare_markdown(run, rts, samples) : render_compare_ansi(run, rts, samples, color));
    fmt::print(stderr, "lmlab compare: run {} stored in {}: {} samples, {} failed\n", outcome.run_id, fl.db,
               outcome.samples, outcome.errors);
    fmt::print("{}\n", outcome.run_id);
    return outcome.errors == 0 ? 0 : 1;
  });
}

}  // namespace

void register_compare(CLI::App& app) {
  auto fl = std::make_shared<Flags>();
  auto* sub = app.add_subcommand("compare", "the same scenario prompts on several runtimes, side by side");
  sub->add_option("scenario", fl->scenario, "scenario file (JSON); lmlab runtimes use its first config")->required();
  sub->add_option("--runtime", fl->runtimes, "NAME=lmlab (in process) | NAME=serve (lmlab serve) | NAME=http://HOST:PORT")
      ->required();
  sub->add_option("--db", fl->db, "results database (created if absent)")->capture_default_str();
  fl->overrides.add_to(*sub, /*with_configs=*/false);  // URL runtimes must serve the same model as --model
  sub->add_option("--format", fl->format, "ansi | md")->check(CLI::IsMember({"ansi", "md"}))->capture_default_str();
  sub->add_option("--host", fl->host, "host name to record (default: this machine's)");
  sub->callback(guarded([fl] { return run_compare_cmd(*fl); }));
}

}  // namespace lmlab::cli
