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

#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>
#include <optional>
#include <ostream>

#include "lmlab/error.h"
#include "lmlab/generate.h"
#include "lmlab/harness.h"
#include "model_options_fields.h"
#include "peak_memory.h"
#include "prompt_builder.h"
#include "quality.h"

namespace lmlab {

namespace {

using harness_detail::PromptBuilder;

std::string engine_config_json(const Scenario& s, const std::filesystem::path& model_dir) {
  nlohmann::json configs = nlohmann::json::array();
  for (const BenchConfig& c : s.configs)
    configs.push_back({{"name", c.name}, {"preset", preset_name(c.preset)}, {"options", harness_detail::options_to_json(c.options)}});
  nlohmann::json prompt = s.prompt.kind == PromptSource::Kind::text_file
                              ? nlohmann::json{{"source", "text"}, {"file", s.prompt.text_file.string()}}
                              : nlohmann::json{{"source", "random"}, {"seed", s.prompt.seed}};
  return nlohmann::json{{"scenario_file", s.file.string()}, {"model_dir", model_dir.string()},
                        {"contexts", s.contexts},          {"repetitions", s.repetitions},
                        {"decode_tokens", s.decode_tokens}, {"sampling", "greedy"},
                        {"prompt", prompt},                {"configs", configs}}
      .dump();
}

std::string run_notes(const Scenario& s, bool peak_resets) {
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

Sample measure(const Model& model, const PromptBuilder& prompts, const std::string& config, int64_t context,
               int64_t rep, int64_t decode_tokens) {
  Sample s;
  s.config = config;
  s.context_tokens = context;
  s.repetition = rep;
  try {
    const int64_t ctx_size = model.info().ctx_size;
    // A context over ctx_size is left to the engine (its own error); one that fits but leaves no room for the
    // decode tokens would silently decode fewer, so it is refused here.
    if (context <= ctx_size && context + decode_tokens > ctx_size)
      throw Error(ErrorKind::invalid_input, "decode_tokens",
                  fmt::format("context {} + {} decode tokens exceed the context size {} (raise ctx_size)", context,
                              decode_tokens, ctx_size));
    const std::vector<int32_t> prompt = prompts.build(context);
    harness_detail::reset_peak_rss();
    auto session = model.new_session();
    const uint64_t ssd_before = model.counters().stream.ssd_bytes_read_total;
    SamplingParams greedy;
    greedy.max_tokens = decode_tokens;
    greedy.stop_at_eos = false;
    const GenerationResult res = generate(*session, prompt, greedy);
    if (res.stats.decode_tokens != decode_tokens)
      throw Error(ErrorKind::internal, "generate",
                  fmt::format("decoded {} of the {} tokens asked for", res.stats.decode_tokens, decode_tokens));
    s.prompt_tokens = res.stats.prompt_tokens;
    s.prompt_ns = res.stats.prompt_ns;
    s.decode_tokens = res.stats.decode_tokens;
    s.decode_ns = res.stats.decode_ns;
    s.ttft_ns = res.stats.ttft_ns;
    s.peak_memory_bytes = static_cast<int64_t>(res.stats.peak_bytes);
    s.kv_cache_bytes = static_cast<int64_t>(res.stats.kv_bytes);
    s.ssd_bytes_read = static_cast<int64_t>(model.counters().stream.ssd_bytes_read_total - ssd_before);
  } catch (const Error& e) {
    s.error = e.what();
  } catch (const std::bad_alloc&) {
    s.error = "out of memory (std::bad_alloc)";
  }
  return s;
}

}  // namespace

RunOutcome run_scenario(const Scenario& scenario, ResultsStore& store, const RunSettings& settings) {
  if (!scenario.model)
    throw Error(ErrorKind::invalid_input, harness_detail::field_where(scenario.file.string(), "model"), "missing: name the model in the scenario or pass --model DIR");
  const std::filesystem::path model_dir = *scenario.model;
  RunInfo info;
  info.host = settings.host.empty() ? host_name() : settings.host;
  info.scenario = scenario.name;
  info.model = model_dir.filename().empty() ? model_dir.parent_path().filename().string() : model_dir.filename().string();
  info.model_bytes = safetensors_bytes(model_dir);
  info.engine_config_json = engine_config_json(scenario, model_dir);
  info.git_commit = settings.git_commit.empty() ? build_info().git_commit : settings.git_commit;
  info.environment_json = settings.environment_json.empty() ? environment_json(probe_environment()) : settings.environment_json;
  // Checked before the sweep so a bad golden file costs nothing.
  const std::vector<std::vector<int32_t>> eval_sequences =
      scenario.quality ? harness_detail::load_eval_sequences(*scenario.quality) : std::vector<std::vector<int32_t>>{};
  const bool peak_resets = harness_detail::reset_peak_rss();
  info.notes = run_notes(scenario, peak_resets);

  const int64_t total = static_cast<int64_t>(scenario.configs.size() * scenario.contexts.size()) * scenario.repetitions;
  double total_work = 0;
  for (int64_t context : scenario.contexts) total_work += static_cast<double>(context + scenario.decode_tokens);
  total_work *= static_cast<double>(scenario.configs.size() * scenario.repetitions);
  Recorder rec(store, store.begin_run(info), total, total_work, scenario.decode_tokens, settings.progress);
  rec.say(fmt::format("lmlab bench: run {} — scenario '{}', model {} ({:.1f} MiB), {} samples", rec.outcome().run_id,
                      scenario.name, model_dir.string(), info.model_bytes / 1048576.0, total));
  if (!peak_resets) rec.say("lmlab bench: warning: cannot reset VmHWM; peak memory is the process's lifetime peak");

  for (const BenchConfig& config : scenario.configs) {
    std::shared_ptr<Model> model;
    std::optional<PromptBuilder> prompts;
    std::string cannot_run;
    try {
      model = Model::load(model_dir, config.options);
      prompts.emplace(scenario.prompt, *model);
    } catch (const Error& e) {
      cannot_run = fmt::format("config '{}' cannot run on {}: {}", config.name, info.model, e.what());
    }
    if (!cannot_run.empty()) rec.say("lmlab bench: " + cannot_run + " (recorded as error samples)");
    for (int64_t context : scenario.contexts) {
      for (int64_t rep = 0; rep < scenario.repetitions; ++rep) {
        if (!cannot_run.empty()) {
          Sample s;
          s.config = config.name;
          s.context_tokens = context;
          s.repetition = rep;
          s.error = cannot_run;
          rec.record(s);
          continue;
        }
        rec.record(measure(*model, *prompts, config.name, context, rep, scenario.decode_tokens));
      }
    }
  }
  if (scenario.quality)
    rec.outcome().quality_errors = harness_detail::run_quality(scenario, eval_sequences, store, rec.outcome().run_id,
                                                               [&](const std::string& line) { rec.say(line); });
  return rec.outcome();
}

}  // namespace lmlab
