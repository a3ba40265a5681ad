// "Expert streaming against the drive" (issue 11: the SSD read rate while decoding against the drive's, and decode
// tok/s against the disk-bound ceiling): one row per (config, context) whose decode read experts from the SSD.
// From each sample's decode_ssd_bytes_read (every decode step but the first) and drive_read_bps (the drive's
// O_DIRECT rate for the same reads, probed right after the sample; 0 = not probed): see the harness's
// in_process_source.cpp. Medians over the cell's samples; the ratios are taken of the medians, as the decode
// ratios are.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "lmlab/results.h"
#include "report_rows.h"

namespace lmlab::report_detail {

struct DriveFigures {
  double read_bps = 0;         // the drive's rate (median over the cell's probed samples)
  double read_fraction = 0;    // decode read rate / the drive's
  double ceiling_tok_s = 0;    // disk-bound decode: the drive's rate / SSD bytes per token
  double ceiling_fraction = 0; // measured decode tok/s / the ceiling
};

struct StreamingRow {
  std::string config;
  int64_t context = 0;
  double ssd_bytes_per_token = 0;  // decode_ssd_bytes_per_token(), median over the cell's samples that read
  double decode_tok_s = 0;         // the cell's median decode tok/s (the report's other tables' figure)
  double read_bps = 0;             // SSD bytes per token x decode tok/s
  std::optional<DriveFigures> drive;  // unset: no sample of the cell probed the drive
};

// In the report's row order; empty when no usable sample read the SSD while decoding (the section is then left out).
std::vector<StreamingRow> streaming_rows(const std::vector<ReportRow>& rows, const std::vector<Sample>& samples);

}  // namespace lmlab::report_detail
