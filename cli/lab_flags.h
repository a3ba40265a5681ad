// What the lab's run subcommands (bench, compare, regression) share: the scenario overrides they take from
// the command line, and opening the results database for writing (a store failure names --db).
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <string>
#include <vector>

#include "common.h"
#include "lmlab/harness.h"

namespace lmlab::cli {

struct ScenarioFlags {
  std::string model;
  std::vector<int64_t> contexts;
  std::vector<std::string> configs;
  int64_t reps = 0, decode_tokens = 0;
  EngineFlags engine;  // --ctx-size, --threads (the option table's rows): applied to every config

  void add_to(CLI::App& app, bool with_configs);
  ScenarioOverrides overrides() const;
};

// Creates the database's folder, opens (or creates) it and runs `body` on it.
int with_results_db(const std::string& db, const std::function<int(ResultsStore&)>& body);

}  // namespace lmlab::cli
