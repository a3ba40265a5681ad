// JSON: the run (with its engine configuration embedded as JSON), the per-(config, context) summary and the
// raw samples, for other tools (dashboards, notebooks).
#include <nlohmann/json.hpp>

#include "lmlab/report.h"
#include "report_rows.h"

namespace lmlab {

std::string render_json(const RunInfo& run, const std::vector<Sample>& samples, const std::vector<Evaluation>& quality) {
  using nlohmann::json;
  json engine_config = json::parse(run.engine_config_json, nullptr, /*allow_exceptions=*/false);
  if (engine_config.is_discarded()) engine_config = run.engine_config_json;  // keep the text as recorded
  json environment = json::parse(run.environment_json, nullptr, /*allow_exceptions=*/false);
  if (environment.is_discarded()) environment = run.environment_json;
  json j;
  j["run"] = {{"id", run.id},           {"started_at", run.started_at}, {"host", run.host},
              {"scenario", run.scenario}, {"model", run.model},         {"model_bytes", run.model_bytes},
              {"git_commit", run.git_commit}, {"notes", run.notes},    {"engine_config", engine_config}, {"environment", environment}};
  j["summary"] = json::array();
  for (const auto& r : report_detail::report_rows(samples)) {
    const Summary& s = r.summary;
    json row = {{"config", s.config}, {"context", s.context}, {"n", s.n}, {"errors", s.errors}};
    if (s.n > 0) {
      row.update({{"decode_tok_s_median", s.decode_tok_s_median}, {"decode_tok_s_p10", s.decode_tok_s_p10},
                  {"decode_tok_s_p90", s.decode_tok_s_p90}, {"ttft_ms_median", s.ttft_ms_median},
                  {"prompt_tok_s_median", r.prompt_tok_s_median}, {"peak_memory_bytes_max", s.peak_memory_bytes_max},
                  {"kv_cache_bytes_median", r.kv_cache_bytes_median}, {"ssd_bytes_read_median", s.ssd_bytes_read_median}});
    }
    if (!r.errors.empty()) row["error_messages"] = r.errors;
    j["summary"].push_back(row);
  }
  j["samples"] = json::array();
  for (const Sample& s : samples) {
    json row = {{"config", s.config},         {"context_tokens", s.context_tokens}, {"repetition", s.repetition},
                {"prompt_tokens", s.prompt_tokens}, {"prompt_ns", s.prompt_ns},     {"decode_tokens", s.decode_tokens},
                {"decode_ns", s.decode_ns},   {"ttft_ns", s.ttft_ns},               {"peak_memory_bytes", s.peak_memory_bytes},
                {"kv_cache_bytes", s.kv_cache_bytes}, {"ssd_bytes_read", s.ssd_bytes_read}};
    row["gpu_memory_bytes"] = s.gpu_memory_bytes ? json(*s.gpu_memory_bytes) : json(nullptr);
    row["decode_ssd_bytes_read"] = s.decode_ssd_bytes_read;
    row["drive_read_bps"] = s.drive_read_bps > 0 ? json(s.drive_read_bps) : json(nullptr);  // null: not probed
    row["error"] = s.error ? json(*s.error) : json(nullptr);
    j["samples"].push_back(row);
  }
  j["quality"] = json::array();
  for (const QualitySummary& q : summarize_quality(quality)) {
    json row = {{"config", q.config}, {"tokens", q.tokens}, {"perplexity", q.perplexity}, {"reference_config", q.reference_config}};
    row["kl_divergence"] = q.kl_divergence ? json(*q.kl_divergence) : json(nullptr);
    j["quality"].push_back(row);
  }
  return j.dump(2) + "\n";
}

}  // namespace lmlab
