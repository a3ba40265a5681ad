// lmlab: one executable, git-style subcommands (DESIGN.md). Each subcommand lives in its own file.
#include <CLI/CLI.hpp>

#include "common.h"

namespace lmlab::cli {
// The lab's subcommands (cmd_bench.cpp, cmd_report.cpp, cmd_gate.cpp).
void register_bench(CLI::App& app);
void register_report(CLI::App& app);
void register_gate(CLI::App& app);
void register_regression(CLI::App& app);
void register_compare(CLI::App& app);
}  // namespace lmlab::cli

int main(int argc, char** argv) {
  CLI::App app{"lmlab: LLM inference engine and profiling lab"};
  app.require_subcommand(1);
  lmlab::cli::register_serve(app);
  lmlab::cli::register_verify(app);
  lmlab::cli::register_generate(app);
  lmlab::cli::register_perplexity(app);
  lmlab::cli::register_info(app);
  lmlab::cli::register_convert(app);
  lmlab::cli::register_synth(app);
  lmlab::cli::register_iobench(app);
  lmlab::cli::register_decode_bench(app);
  lmlab::cli::register_template(app);
  lmlab::cli::register_bench(app);
  lmlab::cli::register_report(app);
  lmlab::cli::register_gate(app);
  lmlab::cli::register_regression(app);
  lmlab::cli::register_compare(app);
  CLI11_PARSE(app, argc, argv);
  return 0;
}
