#include "decode_ratios.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>

#include "display_names.h"

namespace lmlab::report_detail {

std::optional<DecodeRatios> decode_ratios(const std::vector<ReportRow>& rows, const std::vector<std::string>& configs,
                                          const std::vector<int64_t>& contexts, const std::string& baseline) {
  if (std::none_of(rows.begin(), rows.end(), [&](const ReportRow& r) { return r.summary.config == baseline; }))
    return std::nullopt;
  // (config, context) -> median decode tok/s, for the cells with a usable sample.
  std::map<std::pair<std::string, int64_t>, double> median;
  for (const ReportRow& r : rows)
    if (r.summary.n > 0 && r.summary.decode_tok_s_median > 0)
      median[{r.summary.config, r.summary.context}] = r.summary.decode_tok_s_median;

  DecodeRatios out{baseline, contexts, {}, std::nullopt};
  for (const std::string& config : configs) {
    if (config == baseline) continue;
    DecodeRatioRow row{config, {}, {}};
    for (int64_t ctx : contexts) {
      const auto mine = median.find({config, ctx}), base = median.find({baseline, ctx});
      row.ratios.push_back(mine == median.end() || base == median.end() ? std::nullopt
                                                                         : std::optional(mine->second / base->second));
    }
    out.rows.push_back(std::move(row));
  }
  return out;
}

std::string reference_sentence(const DecodeRatios& t) {
  if (!t.reference) return "";
  const PublishedRatios& r = *t.reference;
  if (!t.shows_reference())
    return fmt::format("{}'s published ratios are over {}, not {}: not shown beside these.", r.name,
                       display_name(r.baseline), display_name(t.baseline));
  if (r.description.empty()) return r.name + "'s published ratios beside lmlab's.";
  return fmt::format("{}'s published ratios beside lmlab's: {}{}", r.name, r.description,
                     r.description.ends_with('.') ? "" : ".");
}

std::optional<DecodeRatios> report_decode_ratios(const RunInfo& run, const ReportExtras& extras,
                                                 const std::vector<ReportRow>& rows, const std::vector<Sample>& samples) {
  const std::vector<std::string> configs = configs_in_order(samples);
  std::vector<RunInfo> just_this_one;  // the merged runs are used in place, not copied
  if (extras.merged_runs.empty()) just_this_one.push_back(run);
  const std::vector<RunInfo>& runs = extras.merged_runs.empty() ? just_this_one : extras.merged_runs;
  std::string baseline = first_recorded_config(runs);
  if (baseline.empty() && !configs.empty()) baseline = configs.front();
  std::optional<DecodeRatios> table = decode_ratios(rows, configs, contexts_in_order(samples), baseline);
  if (!table) return table;
  if (!extras.reference_json.empty()) {
    table->reference = published_ratios(extras.reference_json);
  } else {
    for (auto r = runs.rbegin(); r != runs.rend() && !table->reference; ++r) table->reference = recorded_reference(*r);
  }
  if (!table->shows_reference()) return table;
  for (DecodeRatioRow& row : table->rows) {
    const auto mine = table->reference->ratios.find(row.config);
    for (int64_t ctx : table->contexts) {
      std::optional<double> published;
      if (mine != table->reference->ratios.end())
        if (const auto at = mine->second.find(ctx); at != mine->second.end()) published = at->second;
      row.published.push_back(published);
    }
  }
  return table;
}

}  // namespace lmlab::report_detail
