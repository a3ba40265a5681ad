#include "report_rows.h"

#include <algorithm>
#include <map>

namespace lmlab::report_detail {

std::vector<std::string> configs_in_order(const std::vector<Sample>& samples) {
  std::vector<std::string> out;
  for (const Sample& s : samples)
    if (std::find(out.begin(), out.end(), s.config) == out.end()) out.push_back(s.config);
  return out;
}

std::vector<int64_t> contexts_in_order(const std::vector<Sample>& samples) {
  std::vector<int64_t> out;
  for (const Sample& s : samples)
    if (std::find(out.begin(), out.end(), s.context_tokens) == out.end()) out.push_back(s.context_tokens);
  std::sort(out.begin(), out.end());
  return out;
}

bool any_gpu_memory(const std::vector<ReportRow>& rows) {
  return std::any_of(rows.begin(), rows.end(), [](const ReportRow& r) { return r.gpu_memory_bytes_max.has_value(); });
}

std::vector<ReportRow> report_rows(const std::vector<Sample>& samples) {
  std::map<std::pair<std::string, int64_t>, ReportRow> by_key;
  for (Summary& sum : summarize(samples)) by_key[{sum.config, sum.context}].summary = std::move(sum);
  std::map<std::pair<std::string, int64_t>, std::vector<double>> kv, prompt_rate;
  for (const Sample& s : samples) {
    ReportRow& row = by_key[{s.config, s.context_tokens}];
    if (s.error) {
      if (std::find(row.errors.begin(), row.errors.end(), *s.error) == row.errors.end()) row.errors.push_back(*s.error);
      continue;
    }
    kv[{s.config, s.context_tokens}].push_back(static_cast<double>(s.kv_cache_bytes));
    if (s.gpu_memory_bytes) row.gpu_memory_bytes_max = std::max(row.gpu_memory_bytes_max.value_or(0), *s.gpu_memory_bytes);
    if (s.prompt_ns > 0)
      prompt_rate[{s.config, s.context_tokens}].push_back(static_cast<double>(s.prompt_tokens) * 1e9 / static_cast<double>(s.prompt_ns));
  }
  std::vector<ReportRow> out;
  for (const std::string& config : configs_in_order(samples)) {
    for (int64_t context : contexts_in_order(samples)) {
      auto it = by_key.find({config, context});
      if (it == by_key.end()) continue;
      ReportRow row = it->second;
      if (auto k = kv.find({config, context}); k != kv.end()) row.kv_cache_bytes_median = quantile(k->second, 0.5);
      if (auto p = prompt_rate.find({config, context}); p != prompt_rate.end()) row.prompt_tok_s_median = quantile(p->second, 0.5);
      out.push_back(std::move(row));
    }
  }
  return out;
}

}  // namespace lmlab::report_detail
