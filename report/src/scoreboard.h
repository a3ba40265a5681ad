// The configuration scoreboard (as SwiftLM's): one row per config, ranked by decode speed, with its memory
// rank beside it and a star on the best of each; quality (perplexity, KL from vanilla) when the run measured it.
// Speed is the geometric mean of the config's median decode tok/s over the contexts every ranked config
// measured (so a config that failed at the longest context is not ranked on its easy contexts only).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "lmlab/results.h"
#include "report_rows.h"

namespace lmlab::report_detail {

struct ScoreRow {
  std::string config;
  bool usable = false;           // at least one usable sample at every common context
  double decode_tok_s = 0;       // geometric mean over common_contexts of the per-context medians
  double relative_speed = 0;     // decode_tok_s / the best's
  int64_t peak_memory_bytes = 0; // the largest sample's peak over all contexts
  int speed_rank = 0, memory_rank = 0;  // 1 = best; 0 when not usable
  std::optional<QualitySummary> quality;
};

struct Scoreboard {
  std::vector<int64_t> common_contexts;  // the contexts the speed is averaged over
  std::vector<ScoreRow> rows;            // by speed rank; unusable configs last
};

Scoreboard scoreboard(const std::vector<ReportRow>& rows, const std::vector<std::string>& configs,
                      const std::vector<QualitySummary>& quality);

}  // namespace lmlab::report_detail
