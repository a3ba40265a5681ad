// Markdown profiling report (profiling_results_<host>.md): run header and environment, the configuration
// scoreboard (with quality when measured), decode speed relative to the baseline config, expert streaming against
// the drive (configs that read the SSD while decoding), the SVG charts written beside it, one table per context,
// the configs' engine options (per run in a merged report), notes and errors.
// Model size is always the run's recorded model_bytes (never N/A).
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cctype>

#include "decode_ratios.h"
#include "display_names.h"
#include "engine_configs.h"
#include "environment_lines.h"
#include "lmlab/report.h"
#include "report_rows.h"
#include "scoreboard.h"
#include "streaming_table.h"
#include "units.h"

namespace lmlab {

using namespace report_detail;

namespace {

// Table cells may not contain '|' or newlines.
std::string cell(std::string s) {
  std::string out;
  for (char c : s) {
    if (c == '|') out += "\\|";
    else if (c == '\n') out += ' ';
    else out += c;
  }
  return out;
}

std::string samples_cell(const Summary& s) {
  return s.errors == 0 ? fmt::format("{}", s.n) : fmt::format("{} ({} failed)", s.n, s.errors);
}

std::string scoreboard_section(const std::vector<ReportRow>& rows, const std::vector<std::string>& configs,
                               const std::vector<Evaluation>& quality) {
  const Scoreboard board = scoreboard(rows, configs, summarize_quality(quality));
  std::string md = "## Scoreboard\n\n";
  md += board.common_contexts.empty()
            ? std::string("No context was measured by every config, so speed is not ranked.\n\n")
            : fmt::format("Decode tok/s: geometric mean of each config's median at contexts {} (those every config "
                          "measured). Peak memory: the largest sample's. ★ marks the best.",
                          fmt::join(board.common_contexts, ", "));
  const bool q = !quality.empty();
  if (q) {
    const auto qs = summarize_quality(quality);
    md += fmt::format(" Perplexity and KL divergence (nats/token, from {}'s next-token distributions): teacher-forced "
                      "on {} held-out tokens.",
                      qs.empty() ? "vanilla" : display_name(qs.front().reference_config), qs.empty() ? 0 : qs.front().tokens);
  }
  md += "\n\n| Rank | Config | Decode tok/s | vs best | Peak memory | Memory rank |" + std::string(q ? " Perplexity | KL |" : "") + "\n";
  md += "|---|---|---|---|---|---|" + std::string(q ? "---|---|" : "") + "\n";
  for (const ScoreRow& r : board.rows) {
    std::string quality_cells;
    if (q)
      quality_cells = r.quality ? fmt::format(" {:.4f} | {} |", r.quality->perplexity,
                                              r.quality->kl_divergence ? fmt::format("{:.5f}", *r.quality->kl_divergence) : "reference")
                                : std::string(" | |");
    if (!r.usable) {
      md += fmt::format("| – | {} | no usable sample | | {} | |{}\n", cell(display_name(r.config)),
                        r.peak_memory_bytes ? human_bytes(static_cast<double>(r.peak_memory_bytes)) : "", quality_cells);
      continue;
    }
    md += fmt::format("| {}{} | {} | {:.2f} | {:.0f}% | {}{} | {} |{}\n", r.speed_rank, r.speed_rank == 1 ? " ★" : "",
                      cell(display_name(r.config)), r.decode_tok_s, 100 * r.relative_speed,
                      human_bytes(static_cast<double>(r.peak_memory_bytes)), r.memory_rank == 1 ? " ★" : "", r.memory_rank,
                      quality_cells);
  }
  return md + "\n";
}

// With a reference: its sentence above the table, and its columns ("SwiftLM 512", ...) after lmlab's.
std::string decode_ratios_section(const DecodeRatios& t) {
  const std::string base = display_name(t.baseline);
  std::string md = fmt::format("## Decode relative to {}\n\n", cell(base));
  md += fmt::format("Each config's median decode tok/s over {}'s at the same context (1.00 = as fast; - where either "
                    "has no usable sample).\n\n",
                    cell(base));
  if (const std::string about = reference_sentence(t); !about.empty()) md += cell(about) + "\n\n";
  md += "| Config |";
  for (int64_t ctx : t.contexts) md += fmt::format(" {} |", ctx);
  if (t.shows_reference())
    for (int64_t ctx : t.contexts) md += fmt::format(" {} {} |", cell(t.reference->name), ctx);
  md += "\n|---|";
  for (size_t i = 0; i < t.contexts.size() * (t.shows_reference() ? 2 : 1); ++i) md += "---|";
  md += "\n";
  for (const DecodeRatioRow& r : t.rows) {
    md += fmt::format("| {} |", cell(display_name(r.config)));
    for (const auto* column : {&r.ratios, &r.published})
      for (const auto& ratio : *column) md += ratio ? fmt::format(" {:.2f} |", *ratio) : std::string(" - |");
    md += "\n";
  }
  return md + "\n";
}

// MB = 10^6 bytes, as the drive's rate is usually quoted.
std::string streaming_section(const std::vector<StreamingRow>& rows) {
  std::string md = "## Expert streaming against the drive\n\n";
  md += "Configs whose decode read experts from the SSD. SSD MB/token: the bytes read after the first decode step over "
        "the steps they cover (decode tokens - 1); read rate: MB/token x decode tok/s; drive: its O_DIRECT rate for the "
        "same reads, probed right after each sample; disk-bound ceiling: drive / MB per token, the decode speed if "
        "reading were all it did. Medians over the samples, ratios of the medians (so the two percentages agree). "
        "MB = 10^6 bytes.\n\n";
  md += "| Config | Context | SSD MB/token | Read MB/s | Drive MB/s | Read % of drive | Ceiling tok/s | Decode tok/s | "
        "% of ceiling |\n|---|---|---|---|---|---|---|---|---|\n";
  for (const StreamingRow& r : rows) {
    md += fmt::format("| {} | {} | {:.2f} | {:.0f} |", cell(display_name(r.config)), r.context, r.ssd_bytes_per_token / 1e6,
                      r.read_bps / 1e6);
    md += r.drive ? fmt::format(" {:.0f} | {:.0f}% | {:.1f} |", r.drive->read_bps / 1e6, 100 * r.drive->read_fraction,
                                r.drive->ceiling_tok_s)
                  : std::string(" not probed | - | - |");
    md += fmt::format(" {:.1f} | {} |\n", r.decode_tok_s,
                      r.drive ? fmt::format("{:.0f}%", 100 * r.drive->ceiling_fraction) : std::string("-"));
  }
  return md + "\n";
}

// Merged reports: a Runs column, and a line per config whose runs ran it with different options.
std::string configurations_section(const std::vector<ConfigDescription>& configs, bool merged) {
  std::string md = "## Configurations\n\n";
  md += merged ? "| Config | Runs | Engine options |\n|---|---|---|\n" : "| Config | Engine options |\n|---|---|\n";
  for (const ConfigDescription& c : configs)
    md += merged ? fmt::format("| {} | {} | {} |\n", cell(display_name(c.name)), fmt::join(c.runs, ", "), cell(c.summary))
                 : fmt::format("| {} | {} |\n", cell(display_name(c.name)), cell(c.summary));
  md += "\n";
  // describe_configs keeps a config's variants adjacent: say so once, at its second row.
  for (size_t i = 1; i < configs.size(); ++i) {
    const bool second_variant = configs[i].name == configs[i - 1].name && (i < 2 || configs[i - 2].name != configs[i].name);
    if (second_variant)
      md += fmt::format("{} ran with different engine options in different runs: one row per variant, with its runs.\n\n",
                        cell(display_name(configs[i].name)));
  }
  return md;
}

}  // namespace

std::string markdown_report_file_name(const std::string& host) {
  std::string safe = host.empty() ? "unknown-host" : host;
  for (char& c : safe)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') c = '_';
  return "profiling_results_" + safe + ".md";
}

std::string render_markdown(const RunInfo& run, const std::vector<Sample>& samples, const ReportExtras& extras) {
  std::string md = fmt::format("# lmlab profiling results: {}\n\n", cell(run.host));
  md += "| | |\n|---|---|\n";
  md += fmt::format("| Host | {} |\n", cell(run.host));
  md += fmt::format("| Scenario | {} |\n", cell(run.scenario));
  md += fmt::format("| Model | {} |\n", cell(run.model));
  md += fmt::format("| Model size | {} |\n", gib_with_bytes(run.model_bytes));
  if (extras.merged_runs.size() > 1) {
    md += fmt::format("| Runs (commit, date; samples of all{}) | {} |\n",
                      extras.superseded.empty() ? "" : " but the superseded", cell(merged_runs_line(extras.merged_runs)));
    for (const std::string& line : superseded_lines(extras.superseded)) md += fmt::format("| Superseded | {} |\n", cell(line));
  } else {
    md += fmt::format("| Commit (of the binary) | {} |\n", run.git_commit.empty() ? "not recorded" : cell(run.git_commit));
    md += fmt::format("| Date | {} |\n", cell(run.started_at));
    md += fmt::format("| Run | {} |\n", run.id);
  }
  if (const std::string prompt = describe_prompt(run); !prompt.empty()) md += fmt::format("| Prompt | {} |\n", cell(prompt));
  for (const auto& [label, value] : environment_lines(run)) md += fmt::format("| {} | {} |\n", label, cell(value));
  md += "\n";

  const std::vector<ReportRow> rows = report_rows(samples);
  md += scoreboard_section(rows, configs_in_order(samples), extras.quality);
  if (const auto ratios = report_decode_ratios(run, extras, rows, samples)) md += decode_ratios_section(*ratios);
  if (const auto streaming = streaming_rows(rows, samples); !streaming.empty()) md += streaming_section(streaming);
  if (!extras.charts.empty()) {
    md += "## Charts\n\n";
    for (const SvgChart& c : extras.charts) md += fmt::format("![{}]({})\n\n", c.title, c.file_name);
  }
  const bool gpu = any_gpu_memory(rows);  // GPU runs: a GPU memory column after the process's peak memory
  for (int64_t context : contexts_in_order(samples)) {
    md += fmt::format("## Context {} tokens\n\n", context);
    md += fmt::format("| Config | Decode tok/s median (p10–p90) | TTFT ms | Prefill tok/s | Peak memory |{} KV cache | "
                      "SSD read | Samples |\n",
                      gpu ? " GPU memory |" : "");
    md += gpu ? "|---|---|---|---|---|---|---|---|---|\n" : "|---|---|---|---|---|---|---|---|\n";
    for (const ReportRow& r : rows) {
      if (r.summary.context != context) continue;
      const Summary& s = r.summary;
      if (s.n == 0) {
        md += fmt::format("| {} | {} | | | |{} | | {} |\n", cell(display_name(s.config)),
                          r.errors.empty() ? std::string("no usable sample") : "failed: " + cell(short_error(r.errors.front(), 120)),
                          gpu ? " |" : "", samples_cell(s));
        continue;
      }
      const std::string gpu_cell =
          !gpu ? "" : " " + (r.gpu_memory_bytes_max ? human_bytes(static_cast<double>(*r.gpu_memory_bytes_max)) : "") + " |";
      md += fmt::format("| {} | {:.1f} ({:.1f}–{:.1f}) | {:.1f} | {:.0f} | {} |{} {} | {} | {} |\n", cell(display_name(s.config)),
                        s.decode_tok_s_median, s.decode_tok_s_p10, s.decode_tok_s_p90, s.ttft_ms_median,
                        r.prompt_tok_s_median, human_bytes(static_cast<double>(s.peak_memory_bytes_max)), gpu_cell,
                        human_bytes(r.kv_cache_bytes_median), human_bytes(s.ssd_bytes_read_median), samples_cell(s));
    }
    md += "\n";
  }

  const bool merged = extras.merged_runs.size() > 1;
  if (const auto configs = merged ? describe_configs(extras.merged_runs, samples) : describe_configs(run); !configs.empty())
    md += configurations_section(configs, merged);

  md += "## Notes\n\n";
  md += "- Decode tok/s: decode tokens / decode time per sample; median and p10–p90 over the repetitions "
        "(linear interpolation). TTFT, prefill tok/s, KV cache and SSD read: medians. Peak memory: the largest "
        "sample's peak.\n";
  if (!run.notes.empty()) md += "- " + cell(run.notes) + "\n";
  bool any_error = false;
  for (const ReportRow& r : rows) {
    for (const std::string& e : r.errors) {
      if (!any_error) md += "\n### Errors\n\n";
      any_error = true;
      md += fmt::format("- {} at context {}: {}\n", cell(display_name(r.summary.config)), r.summary.context, cell(e));
    }
  }
  return md;
}

}  // namespace lmlab
