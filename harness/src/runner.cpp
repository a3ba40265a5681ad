// The in-process runner: for each config, load the model once with that config's options; for each context
// and repetition, generate greedily from a fresh session on a prompt of exactly `context` tokens and record
// one raw Sample. What each number means (also written into the run's notes):
// - prompt_ns: the engine's prefill time (StepStats.prompt_ns); prompt_tokens: prompt tokens it computed.
// - ttft_ns: the engine's time from the generate() call to the first token sampled (StepStats.ttft_ns): prefill
//   and sampling, not the first token's own decode step.
// - decode_tokens / decode_ns: the engine's decode steps (EOS does not stop them: every sample decodes the
//   same number of tokens).
// - peak_memory_bytes: the process's resident high-water mark during the sample (reset before each one).
// - kv_cache_bytes: the session's KV storage at the end; ssd_bytes_read: the engine's ssd_bytes_read_total
//   counter's increase during the sample.
#include <fmt/format.h>

#include <nlohmann/json.hpp>
#include <optional>
#include <ostream>

#include "lmlab/error.h"
#include "lmlab/generate.h"
#include "lmlab/harness.h"
#include "model_options_fields.h"
#include "peak_memory.h"
#include "progress_eta.h"
#include "prompt_builder.h"
#include "run_passes.h"

namespace lmlab {

namespace {


std::string engine_config_json(const Scenario& s, const std::filesystem::path& model_dir, const RunSettings& settings) {
  nlohmann::json configs = nlohmann::json::array();
  for (const BenchConfig& c : s.configs)
    configs.push_back({{"name", c.name}, {"preset", preset_name(c.preset)}, {"options", harness_detail::options_to_json(c.options)}});
  nlohmann::json prompt = s.prompt.kind == PromptSource::Kind::text_file
                              ? nlohmann::json{{"source", "text"}, {"file", s.prompt.text_file.string()}}
                              : nlohmann::json{{"source", "random"}, {"seed", s.prompt.seed}};
  return nlohmann::json{{"scenario_file", s.file.string()}, {"model_dir", model_dir.string()},
                        {"contexts", s.contexts},          {"repetitions", s.repetitions},
                        {"decode_tokens", s.decode_tokens}, {"sampling", "greedy"},
                        {"prompt", prompt},                {"configs", configs},
                        {"mode", run_mode_name(settings.mode)},      {"url", settings.url}}
      .dump();
}

std::string run_notes(const Scenario& s, RunMode mode, bool peak_resets) {
  if (mode != RunMode::in_process)
    return fmt::format(
        "Prompt: {}. Greedy decoding of {} tokens per sample (ignore_eos) over HTTP ({}): POST /v1/completions with "
        "the prompt as token ids, streamed. TTFT = request sent to the first chunk with text; decode tok/s = the "
        "tokens after the first (usage.completion_tokens - 1) over first to last chunk; inter-token latency = gaps "
        "between chunks. Peak memory, KV cache and SSD bytes from the server's lmlab_ /metrics when it has them.",
        harness_detail::describe(s.prompt), s.decode_tokens, run_mode_name(mode));
  return fmt::format(
      "Prompt: {}. Greedy decoding of {} tokens per sample (EOS ignored), a fresh session per sample; the model is "
      "loaded once per config, so its expert cache stays warm across that config's contexts and repetitions. "
      "TTFT = generate() call to the first token sampled (prefill + sampling). Peak memory = {}. "
      "SSD bytes = the engine's ssd_bytes_read_total increase during the sample (expert bytes read from disk).",
      harness_detail::describe(s.prompt), s.decode_tokens,
      peak_resets ? "the process's resident high-water mark during the sample (VmHWM, reset before each)"
                  : "the process's resident high-water mark since it started (this kernel refused to reset VmHWM)");
}

class Recorder {
 public:
  Recorder(ResultsStore& store, int64_t run_id, int64_t total, std::ostream* progress)
      : store_(store), total_(total), progress_(progress), eta_(nullptr, "", total) {
    outcome_.run_id = run_id;
  }

  void record(const Sample& s) {
    store_.add_sample(outcome_.run_id, s);
    ++outcome_.samples;
    if (s.error) ++outcome_.errors;
    eta_.step("");
    if (!progress_) return;
    const std::string head = fmt::format("[{:>{}}/{}] {:<10} ctx {:>6} rep {}", outcome_.samples,
                                         fmt::format("{}", total_).size(), total_, s.config, s.context_tokens, s.repetition);
    if (s.error) {
      *progress_ << head << "  ERROR: " << *s.error << "  " << eta_.eta_text() << "\n";
    } else {
      *progress_ << head
                 << fmt::format("  decode {:8.1f} tok/s  TTFT {:8.1f} ms  KV {:7.2f} MiB  SSD {:7.2f} MiB  peak {:7.1f} MiB  {}\n",
                                s.decode_tokens * 1e9 / static_cast<double>(s.decode_ns), s.ttft_ns / 1e6,
                                s.kv_cache_bytes / 1048576.0, s.ssd_bytes_read / 1048576.0, s.peak_memory_bytes / 1048576.0,
                                eta_.eta_text());
    }
    progress_->flush();
  }

  void say(const std::string& line) {
    if (progress_) *progress_ << line << "\n" << std::flush;
  }
  const RunOutcome& outcome() const { return outcome_; }

 private:
  ResultsStore& store_;
  int64_t total_;
  std::ostream* progress_;
  harness_detail::ProgressEta eta_;  // silent: only its ETA text goes into the sample lines
  RunOutcome outcome_;
};

}  // namespace

namespace harness_detail {

RunInfo run_info_of(const Scenario& scenario, const RunSettings& settings) {
  if (!scenario.model)
    throw Error(ErrorKind::invalid_input, field_where(scenario.file.string(), "model"), "missing: name the model in the scenario or pass --model DIR");
  const std::filesystem::path model_dir = *scenario.model;
  RunInfo info;
  info.host = settings.host.empty() ? host_name() : settings.host;
  info.scenario = scenario.name;
  info.model = model_dir.filename().empty() ? model_dir.parent_path().filename().string() : model_dir.filename().string();
  info.model_bytes = safetensors_bytes(model_dir);
  info.engine_config_json = engine_config_json(scenario, model_dir, settings);
  info.git_commit = settings.git_commit;
  info.notes = run_notes(scenario, settings.mode, reset_peak_rss());
  return info;
}

RunOutcome run_passes(const Scenario& scenario, const RunInfo& info, const std::vector<Pass>& passes,
                      ResultsStore& store, const RunSettings& settings, const std::string& label,
                      const std::function<void(int64_t run, const Pass&, const SampleSource&)>& started) {
  const int64_t total = static_cast<int64_t>(passes.size() * scenario.contexts.size()) * scenario.repetitions;
  Recorder rec(store, store.begin_run(info), total, settings.progress);
  rec.say(fmt::format("{}: run {} — scenario '{}', model {} ({:.1f} MiB), {} samples", label, rec.outcome().run_id,
                      scenario.name, scenario.model->string(), info.model_bytes / 1048576.0, total));
  for (const Pass& pass : passes) {
    std::unique_ptr<SampleSource> source;
    std::string cannot_run;
    try {
      source = pass.make();
      if (started) started(rec.outcome().run_id, pass, *source);
    } catch (const Error& e) {
      cannot_run = fmt::format("{} '{}' cannot run on {}: {}", pass.kind, pass.name, info.model, e.what());
      rec.say(label + ": " + cannot_run + " (recorded as error samples)");
    }
    for (int64_t context : scenario.contexts) {
      for (int64_t rep = 0; rep < scenario.repetitions; ++rep) {
        if (!source) {
          Sample s;
          s.config = pass.name;
          s.context_tokens = context;
          s.repetition = rep;
          s.error = cannot_run;
          rec.record(s);
          continue;
        }
        rec.record(source->measure(pass.name, context, rep, scenario.decode_tokens));
      }
    }
  }
  store.end_run(rec.outcome().run_id);  // a run killed before this line stays "running": incomplete
  return rec.outcome();
}

}  // namespace harness_detail

RunOutcome run_scenario(const Scenario& scenario, ResultsStore& store, const RunSettings& settings) {
  using namespace harness_detail;
  const RunInfo info = run_info_of(scenario, settings);
  const std::filesystem::path model_dir = *scenario.model;
  const std::string version = "lmlab " + (settings.git_commit.empty() ? std::string("unknown") : settings.git_commit);
  std::vector<Pass> passes;
  if (settings.mode == RunMode::url) {
    // One pass: the server's configuration is its own, whatever the scenario's configs say.
    passes.push_back({"url", "config", [&] { return url_source(settings.url, model_dir, scenario.prompt); }});
  } else {
    for (const BenchConfig& c : scenario.configs)
      passes.push_back({c.name, "config", [&settings, &model_dir, &scenario, &version, options = c.options]() {
                          return settings.mode == RunMode::serve
                                     ? serve_source(settings.lmlab_exe, model_dir, options, scenario.prompt, version)
                                     : in_process_source(model_dir, options, scenario.prompt, version);
                        }});
  }
  return run_passes(scenario, info, passes, store, settings, "lmlab bench");
}

}  // namespace lmlab
