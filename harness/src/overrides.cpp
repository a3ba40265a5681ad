// Command-line overrides of a scenario (lmlab bench --model --contexts --reps --decode-tokens --ctx-size
// --threads --configs), checked like the file's own fields.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>

#include "lmlab/error.h"
#include "lmlab/harness.h"

namespace lmlab {

void apply_overrides(Scenario& s, const ScenarioOverrides& o) {
  if (o.model) s.model = *o.model;
  if (o.no_quality) {  // no evaluations at all: neither quality nor perplexity_tokens
    s.quality.reset();
    s.perplexity_tokens = 0;
  }
  if (o.contexts) {
    if (o.contexts->empty()) throw Error(ErrorKind::invalid_input, "--contexts", "needs at least one context length");
    for (int64_t c : *o.contexts)
      if (c <= 0) throw Error(ErrorKind::invalid_input, "--contexts", fmt::format("{} is not a positive length", c));
    s.contexts = *o.contexts;
  }
  if (o.repetitions) {
    if (*o.repetitions <= 0) throw Error(ErrorKind::invalid_input, "--reps", "must be at least 1");
    s.repetitions = *o.repetitions;
  }
  if (o.decode_tokens) {
    if (*o.decode_tokens <= 0) throw Error(ErrorKind::invalid_input, "--decode-tokens", "must be at least 1");
    s.decode_tokens = *o.decode_tokens;
  }
  for (BenchConfig& c : s.configs) {
    if (o.ctx_size) c.options.ctx_size = *o.ctx_size;
    if (o.threads) c.options.threads = *o.threads;
  }
  if (o.configs) {
    std::vector<BenchConfig> kept;
    for (const std::string& name : *o.configs) {
      auto it = std::find_if(s.configs.begin(), s.configs.end(), [&](const BenchConfig& c) { return c.name == name; });
      if (it == s.configs.end()) {
        std::vector<std::string> names;
        for (const BenchConfig& c : s.configs) names.push_back(c.name);
        throw Error(ErrorKind::invalid_input, "--configs",
                    fmt::format("'{}' is not a config of {} (it has: {})", name, s.file.string(), fmt::join(names, ", ")));
      }
      kept.push_back(*it);
    }
    s.configs = std::move(kept);
  }
}

}  // namespace lmlab
