// The environment header of both reports: the run's recorded machine and build (RunInfo.environment_json,
// written by the harness) and the engine options its configs share, as (label, value) lines in a fixed order.
// A run recorded before the environment was stored (schema < 3) yields a single "not recorded" line.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "lmlab/results.h"

namespace lmlab::report_detail {

std::vector<std::pair<std::string, std::string>> environment_lines(const RunInfo& run);

// The header's run line of a report over several runs of one sweep (lmlab report --runs): "3 (a1b2c3d,
// 2026-12-04T19:43:03Z), 5 (e4f5a6b, 2026-12-05T10:01:00Z)"; each run keeps its own commit and date.
std::string merged_runs_line(const std::vector<RunInfo>& runs);

// The header's lines under it with --supersede, one per (dropped run, superseding run): "run 1's Vanilla @ 40000,
// TurboQuant @ 40000 superseded by run 4 (6 samples dropped)"; none when nothing was superseded.
std::vector<std::string> superseded_lines(const std::vector<SupersededCell>& cells);

}  // namespace lmlab::report_detail
