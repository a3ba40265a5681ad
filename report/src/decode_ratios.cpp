#include "decode_ratios.h"

#include <algorithm>
#include <map>

#include "engine_configs.h"

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

  DecodeRatios out{baseline, contexts, {}};
  for (const std::string& config : configs) {
    if (config == baseline) continue;
    DecodeRatioRow row{config, {}};
    for (int64_t ctx : contexts) {
      const auto mine = median.find({config, ctx}), base = median.find({baseline, ctx});
      row.ratios.push_back(mine == median.end() || base == median.end() ? std::nullopt
                                                                         : std::optional(mine->second / base->second));
    }
    out.rows.push_back(std::move(row));
  }
  return out;
}

std::optional<DecodeRatios> report_decode_ratios(const RunInfo& run, const ReportExtras& extras,
                                                 const std::vector<ReportRow>& rows, const std::vector<Sample>& samples) {
  const std::vector<std::string> configs = configs_in_order(samples);
  std::string baseline = first_recorded_config(extras.merged_runs.empty() ? std::vector<RunInfo>{run} : extras.merged_runs);
  if (baseline.empty() && !configs.empty()) baseline = configs.front();
  return decode_ratios(rows, configs, contexts_in_order(samples), baseline);
}

}  // namespace lmlab::report_detail
