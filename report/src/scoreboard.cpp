#include "scoreboard.h"

#include <algorithm>
#include <cmath>
#include <map>

namespace lmlab::report_detail {

Scoreboard scoreboard(const std::vector<ReportRow>& rows, const std::vector<std::string>& configs,
                      const std::vector<QualitySummary>& quality) {
  // Contexts where a config has a usable median, per config.
  std::map<std::string, std::map<int64_t, const ReportRow*>> usable;
  for (const ReportRow& r : rows)
    if (r.summary.n > 0) usable[r.summary.config][r.summary.context] = &r;

  Scoreboard board;
  // Common contexts: measured by every config that measured anything (a config with nothing is unranked).
  bool first = true;
  for (const auto& [config, by_context] : usable) {
    std::vector<int64_t> mine;
    for (const auto& [ctx, row] : by_context) mine.push_back(ctx);
    if (first) board.common_contexts = mine;
    else {
      std::vector<int64_t> both;
      std::set_intersection(board.common_contexts.begin(), board.common_contexts.end(), mine.begin(), mine.end(),
                            std::back_inserter(both));
      board.common_contexts = both;
    }
    first = false;
  }

  for (const std::string& config : configs) {
    ScoreRow s;
    s.config = config;
    for (const ReportRow& r : rows)
      if (r.summary.config == config) s.peak_memory_bytes = std::max(s.peak_memory_bytes, r.summary.peak_memory_bytes_max);
    const auto it = usable.find(config);
    if (it != usable.end() && !board.common_contexts.empty()) {
      double log_sum = 0;
      for (int64_t ctx : board.common_contexts) log_sum += std::log(it->second.at(ctx)->summary.decode_tok_s_median);
      s.decode_tok_s = std::exp(log_sum / static_cast<double>(board.common_contexts.size()));
      s.usable = s.decode_tok_s > 0;
    }
    for (const QualitySummary& q : quality)
      if (q.config == config) s.quality = q;
    board.rows.push_back(std::move(s));
  }
  // Configs measured only in the quality phase (the reference when --configs left vanilla out).
  for (const QualitySummary& q : quality)
    if (std::none_of(board.rows.begin(), board.rows.end(), [&](const ScoreRow& r) { return r.config == q.config; })) {
      ScoreRow s;
      s.config = q.config;
      s.quality = q;
      board.rows.push_back(std::move(s));
    }

  std::vector<ScoreRow*> ranked;
  for (ScoreRow& r : board.rows)
    if (r.usable) ranked.push_back(&r);
  std::stable_sort(ranked.begin(), ranked.end(), [](const ScoreRow* a, const ScoreRow* b) { return a->peak_memory_bytes < b->peak_memory_bytes; });
  for (size_t i = 0; i < ranked.size(); ++i) ranked[i]->memory_rank = static_cast<int>(i) + 1;
  std::stable_sort(ranked.begin(), ranked.end(), [](const ScoreRow* a, const ScoreRow* b) { return a->decode_tok_s > b->decode_tok_s; });
  for (size_t i = 0; i < ranked.size(); ++i) {
    ranked[i]->speed_rank = static_cast<int>(i) + 1;
    ranked[i]->relative_speed = ranked[i]->decode_tok_s / ranked.front()->decode_tok_s;
  }
  std::stable_sort(board.rows.begin(), board.rows.end(), [](const ScoreRow& a, const ScoreRow& b) {
    if (a.usable != b.usable) return a.usable;
    return a.usable && a.speed_rank < b.speed_rank;
  });
  return board;
}

}  // namespace lmlab::report_detail
