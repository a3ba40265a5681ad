// The runner: a scenario's configs as passes (run_passes.h), each a SampleSource (in process, an lmlab serve
// subprocess, or a URL) measured at every context x repetition, config after config or, with "interleave",
// context by context with every source alive. What each number means is written into the run's notes; the
// in-process source's fields are described in in_process_source.cpp, the HTTP ones in http_sample.h.
// Evaluations: each config's teacher-forced NLL after its samples (scenario perplexity_tokens), or the quality
// phase after every sample (scenario quality: perplexity and KL from vanilla on held-out text, quality.h).
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <nlohmann/json.hpp>
#include <optional>
#include <ostream>

#include "lmlab/error.h"
#include "lmlab/generate.h"
#include "lmlab/perplexity.h"
#include "lmlab/harness.h"
#include "model_options_fields.h"
#include "peak_memory.h"
#include "prompt_builder.h"
#include "quality.h"
#include "run_passes.h"

namespace lmlab {

namespace {

// What the run measured with (the gate compares its measurement settings) and, under "reference", the published
// ratios its report sets beside the decode ratios (no measurement setting: the gate does not read it).
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
                        {"interleave", s.interleave},      {"perplexity_tokens", s.perplexity_tokens},
                        {"quality", s.quality ? nlohmann::json{{"golden", s.quality->golden.string()},
                                                               {"sequences", s.quality->sequences},
                                                               {"max_tokens", s.quality->max_tokens}}
                                              : nlohmann::json(nullptr)},
                        {"prompt", prompt},                {"configs", configs},
                        {"mode", run_mode_name(settings.mode)},      {"url", settings.url},
                        {"reference", harness_detail::reference_to_json(s)}}
      .dump();
}

std::string interleave_note(const Scenario& s) {
  return s.interleave ? " Interleaved: every config's source stays alive and samples run context by context, repetition "
                        "by repetition, config by config."
                      : "";
}

std::string run_notes(const Scenario& s, RunMode mode, bool peak_resets) {
  if (mode != RunMode::in_process)
    return fmt::format(
        "Prompt: {}. Greedy decoding of {} tokens per sample (ignore_eos) over HTTP ({}): POST /v1/completions with "
        "the prompt as token ids, streamed. TTFT = request sent to the first chunk with text; decode tok/s = the "
        "tokens after the first (usage.completion_tokens - 1) over first to last chunk; inter-token latency = gaps "
        "between chunks. Peak memory, KV cache, SSD bytes and GPU memory (the device allocator's peak) from the "
        "server's lmlab_ /metrics when it has them.",
        harness_detail::describe(s.prompt), s.decode_tokens, run_mode_name(mode)) +
           interleave_note(s);
  return fmt::format(
      "Prompt: {}. Greedy decoding of {} tokens per sample (EOS ignored), a fresh session per sample; the model is "
      "loaded once per config, so its expert cache stays warm across that config's contexts and repetitions. "
      "TTFT = generate() call to the first token sampled (prefill + sampling). Peak memory = {}. GPU memory (GPU "
      "runs) = the engine's device allocator as the sample ends (weights, scratch, the session's KV). "
      "SSD bytes = the engine's ssd_bytes_read_total increase during the sample (expert bytes read from disk). "
      "Drive = O_DIRECT random-read bandwidth probed for 0.25 s after each expert-streaming sample, on the model's "
      "largest .safetensors file in the decode's pattern (its mean read size, in groups of its mean reads per layer "
      "step).{}",
      harness_detail::describe(s.prompt), s.decode_tokens,
      peak_resets ? "the process's resident high-water mark during the sample (VmHWM, reset before each)"
                  : "the process's resident high-water mark since it started (this kernel refused to reset VmHWM)",
      s.interleave ? " Interleaved: every config's model stays loaded and samples run context by context, repetition by "
                     "repetition, config by config."
                   : "");
}

class Recorder {
 public:
  // total_work: the sum over every planned sample of its tokens (context + decode), the ETA's unit.
  Recorder(ResultsStore& store, int64_t run_id, int64_t total, double total_work, int64_t decode_tokens, std::ostream* progress)
      : store_(store), total_(total), total_work_(total_work), decode_tokens_(decode_tokens), progress_(progress),
        start_(std::chrono::steady_clock::now()) {
    outcome_.run_id = run_id;
  }

  void record(const Sample& s) {
    store_.add_sample(outcome_.run_id, s);
    ++outcome_.samples;
    done_work_ += static_cast<double>(s.context_tokens + decode_tokens_);
    if (s.error) ++outcome_.errors;
    if (!progress_) return;
    const std::string head = fmt::format("[{:>{}}/{}] {} {:<10} ctx {:>6} rep {}", outcome_.samples,
                                         fmt::format("{}", total_).size(), total_, eta(), s.config, s.context_tokens, s.repetition);
    if (s.error) {
      *progress_ << head << "  ERROR: " << *s.error << "\n";
    } else {
      *progress_ << head
                 << fmt::format("  decode {:8.1f} tok/s  TTFT {:8.1f} ms  KV {:7.2f} MiB  SSD {:7.2f} MiB  peak {:7.1f} MiB\n",
                                s.decode_tokens * 1e9 / static_cast<double>(s.decode_ns), s.ttft_ns / 1e6,
                                s.kv_cache_bytes / 1048576.0, s.ssd_bytes_read / 1048576.0, s.peak_memory_bytes / 1048576.0);
    }
    progress_->flush();
  }

  void say(const std::string& line) {
    if (progress_) *progress_ << line << "\n" << std::flush;
  }
  const RunOutcome& outcome() const { return outcome_; }
  RunOutcome& outcome() { return outcome_; }

 private:
  // "ETA 1:23": the time so far per token done (context + decode), times the tokens left. A sample's cost
  // grows with its context, and a sweep runs config by config, so counting samples would promise the long
  // contexts at the short ones' price. Still a guide (configs differ in speed); "done" after the last.
  std::string eta() const {
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    if (outcome_.samples >= total_) return fmt::format("{:>9}", fmt::format("{}:{:02} done", static_cast<int64_t>(elapsed) / 60, static_cast<int64_t>(elapsed) % 60));
    const auto left = static_cast<int64_t>(elapsed / done_work_ * std::max(0.0, total_work_ - done_work_));
    return fmt::format("ETA {:>5}", fmt::format("{}:{:02}", left / 60, left % 60));
  }

  ResultsStore& store_;
  int64_t total_;
  double total_work_, done_work_ = 0;
  int64_t decode_tokens_;
  std::ostream* progress_;
  std::chrono::steady_clock::time_point start_;
  RunOutcome outcome_;
};

// A pass's source once started, or why it cannot run (then every sample of the pass records that error).
struct Started {
  std::unique_ptr<harness_detail::SampleSource> source;
  std::string cannot_run;
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
  info.git_commit = settings.git_commit.empty() ? build_info().git_commit : settings.git_commit;
  // One probe of the machine: the environment header and the gate's fingerprint are views of it.
  const Environment env = probe_environment();
  info.environment_json = settings.environment_json.empty() ? environment_json(env) : settings.environment_json;
  info.host_fingerprint = settings.host_fingerprint.empty() ? host_fingerprint(env) : settings.host_fingerprint;
  info.notes = run_notes(scenario, settings.mode, reset_peak_rss());
  return info;
}

RunOutcome run_passes(const Scenario& scenario, const RunInfo& info, const std::vector<Pass>& passes,
                      ResultsStore& store, const RunSettings& settings, const std::string& label,
                      const std::function<void(int64_t run, const Pass&, const SampleSource&)>& started,
                      const AfterSamples& after_samples) {
  const int64_t total = static_cast<int64_t>(passes.size() * scenario.contexts.size()) * scenario.repetitions;
  double total_work = 0;
  for (int64_t context : scenario.contexts) total_work += static_cast<double>(context + scenario.decode_tokens);
  total_work *= static_cast<double>(passes.size() * scenario.repetitions);
  Recorder rec(store, store.begin_run(info), total, total_work, scenario.decode_tokens, settings.progress);
  const int64_t run_id = rec.outcome().run_id;
  rec.say(fmt::format("{}: run {} — scenario '{}', model {} ({:.1f} MiB), {} samples", label, run_id,
                      scenario.name, scenario.model->string(), info.model_bytes / 1048576.0, total));
  if (!reset_peak_rss()) rec.say(label + ": warning: cannot reset VmHWM; peak memory is the process's lifetime peak");

  auto start = [&](const Pass& pass) {
    Started s;
    try {
      s.source = pass.make();
      if (started) started(run_id, pass, *s.source);
    } catch (const Error& e) {
      s.source.reset();
      s.cannot_run = fmt::format("{} '{}' cannot run on {}: {}", pass.kind, pass.name, info.model, e.what());
      rec.say(label + ": " + s.cannot_run + " (recorded as error samples)");
    }
    return s;
  };
  auto sample = [&](Started& s, const Pass& pass, int64_t context, int64_t rep) {
    if (s.source) return rec.record(s.source->measure(pass.name, context, rep, scenario.decode_tokens));
    Sample failed;
    failed.config = pass.name;
    failed.context_tokens = context;
    failed.repetition = rep;
    failed.error = s.cannot_run;
    rec.record(failed);
  };
  auto evaluate = [&](Started& s, const Pass& pass) {
    if (scenario.perplexity_tokens <= 0) return;
    Evaluation e;
    e.config = pass.name;
    if (s.source) {
      e = s.source->evaluate(pass.name, scenario.perplexity_tokens);
    } else {
      e.error = s.cannot_run;
    }
    store.add_evaluation(run_id, e);
    rec.say(e.error ? fmt::format("{}: perplexity of {} failed: {}", label, pass.name, *e.error)
                    : fmt::format("{}: perplexity of {} over {} tokens: {:.4f}", label, pass.name, e.tokens,
                                  std::exp(e.nll_sum / static_cast<double>(e.tokens))));
  };

  if (scenario.interleave) {
    // Every source alive at once, so a change of the machine's load hits every pass alike.
    std::vector<Started> all;
    for (const Pass& pass : passes) all.push_back(start(pass));
    for (int64_t context : scenario.contexts)
      for (int64_t rep = 0; rep < scenario.repetitions; ++rep)
        for (size_t i = 0; i < passes.size(); ++i) sample(all[i], passes[i], context, rep);
    for (size_t i = 0; i < passes.size(); ++i) evaluate(all[i], passes[i]);
  } else {
    for (const Pass& pass : passes) {  // one source alive at a time
      Started s = start(pass);
      for (int64_t context : scenario.contexts)
        for (int64_t rep = 0; rep < scenario.repetitions; ++rep) sample(s, pass, context, rep);
      evaluate(s, pass);
    }
  }
  if (after_samples) rec.outcome().quality_errors = after_samples(run_id, [&](const std::string& line) { rec.say(line); });
  store.end_run(run_id);  // a run killed before this line stays "running": incomplete
  return rec.outcome();
}

}  // namespace harness_detail

RunOutcome run_scenario(const Scenario& scenario, ResultsStore& store, const RunSettings& settings) {
  using namespace harness_detail;
  const RunInfo info = run_info_of(scenario, settings);
  const std::filesystem::path model_dir = *scenario.model;
  const std::string version = "lmlab " + (info.git_commit.empty() ? std::string("unknown") : info.git_commit);
  if (scenario.quality && settings.mode == RunMode::url)
    throw Error(ErrorKind::invalid_input, field_where(scenario.file.string(), "quality"),
                "needs the scenario's configs in this process (--mode in-process or serve); pass --no-quality");
  // Checked before the sweep so a bad golden file costs nothing.
  const std::vector<std::vector<int32_t>> eval_sequences =
      scenario.quality ? load_eval_sequences(*scenario.quality) : std::vector<std::vector<int32_t>>{};
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
  AfterSamples quality;
  if (scenario.quality)
    quality = [&](int64_t run, const std::function<void(const std::string&)>& say) {
      return run_quality(scenario, eval_sequences, store, run, say);
    };
  return run_passes(scenario, info, passes, store, settings, "lmlab bench", {}, quality);
}

}  // namespace lmlab
