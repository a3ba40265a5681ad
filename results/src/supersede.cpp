// lmlab report --runs A,B,C --supersede: a sweep measured over several sittings where a later sitting re-measured
// some (config, context) cells with a newer binary. Each cell keeps the samples of the latest run of the list that
// has any there; the earlier runs' samples of that cell are dropped and reported, so the report can say which
// binary each cell comes from. Failed samples count as measuring the cell: a later failure is the newer binary's.
#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <utility>

#include "lmlab/results.h"

namespace lmlab {

std::vector<SupersededCell> drop_superseded_samples(std::vector<Sample>& samples, const std::vector<int64_t>& run_order) {
  auto position = [&](int64_t run) {
    const auto it = std::find(run_order.begin(), run_order.end(), run);
    if (it == run_order.end())
      throw Error(ErrorKind::internal, "drop_superseded_samples", fmt::format("a sample of run {} not in the list", run));
    return it - run_order.begin();
  };
  using Cell = std::pair<std::string, int64_t>;  // (config, context_tokens)
  std::map<Cell, int64_t> latest;                 // the cell's run of the highest position in run_order
  for (const Sample& s : samples) {
    const auto pos = position(s.run_id);
    auto [it, fresh] = latest.try_emplace({s.config, s.context_tokens}, s.run_id);
    if (!fresh && pos > position(it->second)) it->second = s.run_id;
  }

  std::vector<SupersededCell> dropped;
  std::vector<Sample> kept;
  for (Sample& s : samples) {
    const int64_t by = latest.at({s.config, s.context_tokens});
    if (s.run_id == by) {
      kept.push_back(std::move(s));
      continue;
    }
    const auto same = [&](const SupersededCell& c) {
      return c.config == s.config && c.context == s.context_tokens && c.run == s.run_id;
    };
    if (auto it = std::find_if(dropped.begin(), dropped.end(), same); it != dropped.end())
      ++it->samples;
    else
      dropped.push_back({s.config, s.context_tokens, s.run_id, by, 1});
  }
  samples = std::move(kept);
  std::stable_sort(dropped.begin(), dropped.end(), [&](const SupersededCell& a, const SupersededCell& b) {
    return std::pair(position(a.run), position(a.by_run)) < std::pair(position(b.run), position(b.by_run));
  });
  return dropped;
}

}  // namespace lmlab
