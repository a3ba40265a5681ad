#include "lab_flags.h"

#include <filesystem>

#include "lmlab/error.h"

namespace lmlab::cli {

void ScenarioFlags::add_to(CLI::App& app, bool with_configs) {
  app.add_option("--model", model, "model directory (overrides the scenario's \"model\")");
  // Positive: 0 would read as "not given" below and silently keep the scenario's value.
  app.add_option("--contexts", contexts, "context lengths in tokens (overrides the scenario's)")
      ->delimiter(',')
      ->check(CLI::PositiveNumber);
  app.add_option("--reps", reps, "repetitions per config and context (overrides the scenario's)")
      ->check(CLI::PositiveNumber);
  app.add_option("--decode-tokens", decode_tokens, "tokens decoded per sample (overrides the scenario's)")
      ->check(CLI::PositiveNumber);
  engine.add_options_to(app, {"ctx_size", "threads"});
  if (with_configs)
    app.add_option("--configs", configs, "run only these configs of the scenario, in this order")->delimiter(',');
}

ScenarioOverrides ScenarioFlags::overrides() const {
  ScenarioOverrides o;
  if (!model.empty()) o.model = std::filesystem::absolute(model).lexically_normal();
  if (!contexts.empty()) o.contexts = contexts;
  if (!configs.empty()) o.configs = configs;
  if (reps != 0) o.repetitions = reps;
  if (decode_tokens != 0) o.decode_tokens = decode_tokens;
  const ModelOptions given = engine.options();
  if (engine.given("ctx_size")) o.ctx_size = given.ctx_size;
  if (engine.given("threads")) o.threads = given.threads;
  return o;
}

int with_results_db(const std::string& db, const std::function<int(ResultsStore&)>& body) {
  const std::filesystem::path path(db);
  if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path());
  ResultsStore store = ResultsStore::open(db);
  return body(store);
}

}  // namespace lmlab::cli
