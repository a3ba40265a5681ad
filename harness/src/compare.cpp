// `lmlab compare`: one run, one pass per runtime over the scenario's contexts and repetitions, each runtime's
// name, kind, target and version stored beside the samples.
#include <fmt/format.h>

#include <algorithm>
#include <cctype>

#include "lmlab/error.h"
#include "lmlab/harness.h"
#include "http_client.h"
#include "run_passes.h"

namespace lmlab {

std::string_view run_mode_name(RunMode mode) {
  switch (mode) {
    case RunMode::in_process: return "in-process";
    case RunMode::serve: return "serve";
    case RunMode::url: return "url";
  }
  return "?";
}

RunMode run_mode_from_name(std::string_view name) {
  for (RunMode m : {RunMode::in_process, RunMode::serve, RunMode::url})
    if (run_mode_name(m) == name) return m;
  throw Error(ErrorKind::invalid_input, "--mode", fmt::format("'{}' is not in-process, serve or url", name));
}

RuntimeSpec parse_runtime_spec(const std::string& text) {
  const size_t eq = text.find('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == text.size() || text.size() > 2100)
    throw Error(ErrorKind::invalid_input, "--runtime", fmt::format("'{}' is not NAME=lmlab, NAME=serve or NAME=URL", text.substr(0, 200)));
  RuntimeSpec r;
  r.name = text.substr(0, eq);
  for (char c : r.name)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.' && c != '+')
      throw Error(ErrorKind::invalid_input, "--runtime", fmt::format("name '{}' may hold only letters, digits and -_.+", r.name));
  const std::string target = text.substr(eq + 1);
  if (target == "lmlab") {
    r.mode = RunMode::in_process;
  } else if (target == "serve") {
    r.mode = RunMode::serve;
  } else {
    r.mode = RunMode::url;
    r.url = target;
    harness_detail::parse_http_url(target, "--runtime " + r.name);  // refused now, not after the other runtimes ran
  }
  return r;
}

RunOutcome run_compare(const Scenario& scenario, const std::vector<RuntimeSpec>& runtimes, ResultsStore& store,
                       const RunSettings& settings) {
  using namespace harness_detail;
  if (runtimes.empty()) throw Error(ErrorKind::invalid_input, "--runtime", "give at least one runtime");
  for (size_t i = 0; i < runtimes.size(); ++i)
    for (size_t j = 0; j < i; ++j)
      if (runtimes[i].name == runtimes[j].name)
        throw Error(ErrorKind::invalid_input, "--runtime", fmt::format("'{}' is named twice", runtimes[i].name));
  RunInfo info = run_info_of(scenario, settings);
  info.scenario = "compare: " + scenario.name;
  const std::filesystem::path model_dir = *scenario.model;
  const ModelOptions options = scenario.configs.front().options;
  const std::string version = "lmlab " + (info.git_commit.empty() ? std::string("unknown") : info.git_commit);
  std::vector<Pass> passes;
  for (const RuntimeSpec& r : runtimes) {
    passes.push_back({r.name, "runtime", [&, r] {
                        if (r.mode == RunMode::url) return url_source(r.url, model_dir, scenario.prompt);
                        if (r.mode == RunMode::serve)
                          return serve_source(settings.lmlab_exe, model_dir, options, scenario.prompt, version);
                        return in_process_source(model_dir, options, scenario.prompt, version);
                      }});
  }
  auto started = [&](int64_t run, const Pass& pass, const SampleSource& source) {
    const RuntimeSpec& r = *std::find_if(runtimes.begin(), runtimes.end(), [&](const auto& x) { return x.name == pass.name; });
    store.add_runtime(run, {r.name, std::string(run_mode_name(r.mode)), r.mode == RunMode::url ? r.url : model_dir.string(),
                            source.version()});
  };
  return run_passes(scenario, info, passes, store, settings, "lmlab compare", started);
}

}  // namespace lmlab
