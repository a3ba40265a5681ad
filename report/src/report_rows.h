// The rows every renderer shows: one per (config, context), in the order configs and contexts first appear
// in the run (the scenario's order, not alphabetical), built on results' summarize().
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "lmlab/results.h"

namespace lmlab::report_detail {

struct ReportRow {
  Summary summary;                  // decode tok/s median/p10/p90, TTFT median, peak max, SSD median, n, errors
  double prompt_tok_s_median = 0;   // prompt tokens computed / prefill time
  double kv_cache_bytes_median = 0;
  std::optional<int64_t> gpu_memory_bytes_max;  // GPU runs: the most device memory a sample held
  std::vector<std::string> errors;  // distinct error messages of the group's failed samples
};

// Whether any row has GPU memory (the tables then show its column).
bool any_gpu_memory(const std::vector<ReportRow>& rows);

std::vector<ReportRow> report_rows(const std::vector<Sample>& samples);
std::vector<std::string> configs_in_order(const std::vector<Sample>& samples);
std::vector<int64_t> contexts_in_order(const std::vector<Sample>& samples);  // ascending

}  // namespace lmlab::report_detail
