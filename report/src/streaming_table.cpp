#include "streaming_table.h"

#include <map>
#include <utility>

namespace lmlab::report_detail {

std::vector<StreamingRow> streaming_rows(const std::vector<ReportRow>& rows, const std::vector<Sample>& samples) {
  // (config, context) -> its successful samples whose decode read the SSD.
  std::map<std::pair<std::string, int64_t>, std::vector<const Sample*>> streamed;
  for (const Sample& s : samples)
    if (!s.error && s.decode_ssd_bytes_read > 0 && decode_ssd_steps(s) > 0)
      streamed[{s.config, s.context_tokens}].push_back(&s);

  std::vector<StreamingRow> out;
  for (const ReportRow& r : rows) {
    const auto cell = streamed.find({r.summary.config, r.summary.context});
    if (cell == streamed.end() || r.summary.n == 0 || !(r.summary.decode_tok_s_median > 0)) continue;
    std::vector<double> per_token;
    for (const Sample* s : cell->second) per_token.push_back(decode_ssd_bytes_per_token(*s));
    const double bytes_per_token = quantile(per_token, 0.5), tok_s = r.summary.decode_tok_s_median;
    // The bytes cover decode_ssd_steps() steps; their time is taken at the sample's mean step, 1 / decode tok/s
    // seconds (decode_ns times every step, the first included, and is not split per step). So the read rate is
    // bytes / (steps / tok/s) = bytes per token x tok/s.
    StreamingRow row{r.summary.config, r.summary.context, bytes_per_token, tok_s, bytes_per_token * tok_s, std::nullopt};
    if (const double drive = median_drive_read_bps(cell->second); drive > 0) {
      DriveFigures d{drive, row.read_bps / drive, drive / row.ssd_bytes_per_token, 0};
      d.ceiling_fraction = row.decode_tok_s / d.ceiling_tok_s;
      row.drive = d;
    }
    out.push_back(std::move(row));
  }
  return out;
}

}  // namespace lmlab::report_detail
