// Flags shared by every subcommand that runs the engine (DESIGN.md: keep them stable).
#pragma once

#include <CLI/CLI.hpp>
#include <initializer_list>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "lmlab/error.h"
#include "lmlab/model.h"

namespace lmlab::cli {

// The engine's options as flags, generated from the option table (lmlab/options.h): every engine-running
// subcommand gets all of them through add_to; a subcommand that takes a few (bench, iobench) names them.
// Values are kept as given and checked by the table in options(), so errors name the flag.
class EngineFlags {
 public:
  std::string model;

  void add_to(CLI::App& app, bool model_required = true);  // --model and every option
  void add_options_to(CLI::App& app, std::initializer_list<std::string_view> keys);
  ModelOptions options() const;  // the table's defaults with the given flags applied
  bool given(std::string_view key) const;

 private:
  void add_option(CLI::App& app, const OptionSpec& spec);
  std::map<std::string, std::string, std::less<>> given_;  // key -> text as given
  std::vector<const OptionAlias*> aliases_given_;
};

// Runs a subcommand body, printing lmlab::Error (and other exceptions) as one line on stderr; returns exit code.
int run_guarded(const std::function<int()>& body);

void register_verify(CLI::App& app);
void register_generate(CLI::App& app);
void register_perplexity(CLI::App& app);
void register_info(CLI::App& app);
void register_convert(CLI::App& app);
void register_synth(CLI::App& app);
void register_iobench(CLI::App& app);
void register_decode_bench(CLI::App& app);
void register_template(CLI::App& app);
void register_serve(CLI::App& app);

}  // namespace lmlab::cli

namespace lmlab::cli {
// Wraps a subcommand body as a CLI11 callback: errors print one line, a non-zero code becomes the exit code.
std::function<void()> guarded(std::function<int()> body);
}  // namespace lmlab::cli
