// "Decode relative to <baseline>": each config's median decode tok/s over the baseline config's at each context
// both measured, and beside them a published sweep's ratios when the run carries one (issue 11 sets lmlab's beside
// SwiftLM's). The baseline is the scenario's first config (Vanilla in the presets); without its samples there is
// no table. A reference over another baseline is named, not shown: its ratios would not compare.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "engine_configs.h"
#include "lmlab/report.h"
#include "report_rows.h"

namespace lmlab::report_detail {

struct DecodeRatioRow {
  std::string config;
  std::vector<std::optional<double>> ratios;  // per DecodeRatios::contexts; unset where either median is missing
  // The reference's ratio per DecodeRatios::contexts (unset where it gives none); empty unless it is shown.
  std::vector<std::optional<double>> published;
};

struct DecodeRatios {
  std::string baseline;
  std::vector<int64_t> contexts;     // every context of the report, ascending
  std::vector<DecodeRatioRow> rows;  // every config but the baseline, in `configs` order
  std::optional<PublishedRatios> reference;  // the report's reference, shown when its baseline is this one

  bool shows_reference() const { return reference && reference->baseline == baseline; }
};

// The sentence above the table about its reference ("" without one): "<name>'s published ratios beside lmlab's:
// <description>.", or why they are not shown.
std::string reference_sentence(const DecodeRatios& table);

// nullopt when `baseline` has no row among `rows` (not measured in this report).
std::optional<DecodeRatios> decode_ratios(const std::vector<ReportRow>& rows, const std::vector<std::string>& configs,
                                          const std::vector<int64_t>& contexts, const std::string& baseline);

// A report's table: the baseline is the first config recorded by the runs shown (extras.merged_runs, else `run`),
// or the samples' first config when no run recorded its configs; the reference is extras.reference_json, else the
// last of those runs that recorded one.
std::optional<DecodeRatios> report_decode_ratios(const RunInfo& run, const ReportExtras& extras,
                                                 const std::vector<ReportRow>& rows, const std::vector<Sample>& samples);

}  // namespace lmlab::report_detail
