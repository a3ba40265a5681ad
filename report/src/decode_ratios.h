// "Decode relative to <baseline>": each config's median decode tok/s over the baseline config's at each context
// both measured (issue 11 sets these beside SwiftLM's published ratios). The baseline is the scenario's first
// config (Vanilla in the presets); without its samples there is no table.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "lmlab/report.h"
#include "report_rows.h"

namespace lmlab::report_detail {

struct DecodeRatioRow {
  std::string config;
  std::vector<std::optional<double>> ratios;  // per DecodeRatios::contexts; unset where either median is missing
};

struct DecodeRatios {
  std::string baseline;
  std::vector<int64_t> contexts;     // every context of the report, ascending
  std::vector<DecodeRatioRow> rows;  // every config but the baseline, in `configs` order
};

// nullopt when `baseline` has no row among `rows` (not measured in this report).
std::optional<DecodeRatios> decode_ratios(const std::vector<ReportRow>& rows, const std::vector<std::string>& configs,
                                          const std::vector<int64_t>& contexts, const std::string& baseline);

// A report's table: the baseline is the first config recorded by the runs shown (extras.merged_runs, else `run`),
// or the samples' first config when no run recorded its configs.
std::optional<DecodeRatios> report_decode_ratios(const RunInfo& run, const ReportExtras& extras,
                                                 const std::vector<ReportRow>& rows, const std::vector<Sample>& samples);

}  // namespace lmlab::report_detail
