// CSV: one row per raw sample (the database's numbers, nothing derived), for spreadsheets and pandas.
#include <fmt/format.h>

#include "lmlab/report.h"

namespace lmlab {

namespace {

// RFC 4180: quote fields holding a comma, quote or line break; double the quotes inside.
std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

}  // namespace

std::string render_csv(const RunInfo& run, const std::vector<Sample>& samples) {
  std::string out =
      "run_id,host,model,config,context_tokens,repetition,prompt_tokens,prompt_ns,decode_tokens,decode_ns,ttft_ns,"
      "peak_memory_bytes,kv_cache_bytes,ssd_bytes_read,gpu_memory_bytes,decode_ssd_bytes_read,drive_read_bps,error\n";
  for (const Sample& s : samples) {
    out += fmt::format("{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n", s.run_id > 0 ? s.run_id : run.id, csv_field(run.host),
                       csv_field(run.model), csv_field(s.config), s.context_tokens, s.repetition, s.prompt_tokens,
                       s.prompt_ns, s.decode_tokens, s.decode_ns, s.ttft_ns, s.peak_memory_bytes, s.kv_cache_bytes,
                       s.ssd_bytes_read, s.gpu_memory_bytes ? std::to_string(*s.gpu_memory_bytes) : std::string(),
                       s.decode_ssd_bytes_read, s.drive_read_bps > 0 ? fmt::format("{:.0f}", s.drive_read_bps) : "",
                       csv_field(s.error.value_or("")));
  }
  return out;
}

}  // namespace lmlab
