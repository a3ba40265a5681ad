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
//   counter's increase during the sample; decode_ssd_bytes_read: its increase after the first decode step.
// - output_tokens: the greedy tokens generated. Evaluations (scenario perplexity_tokens): each config's NLL.
#include <fmt/format.h>

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
                        {"interleave", s.interleave},      {"perplexity_tokens", s.perplexity_tokens},
                        {"prompt", prompt},                {"configs", configs}}
      .dump();
}

std::string run_notes(const Scenario& s, bool peak_resets) {
  return fmt::format(
      "Prompt: {}. Greedy decoding of {} tokens per sample (EOS ignored), a fresh session per sample; the model is "
      "loaded once per config, so its expert cache stays warm across that config's contexts and repetitions. "
      "TTFT = generate() call to the first token sampled (prefill + sampling). Peak memory = {}. "
      "SSD bytes = the engine's ssd_bytes_read_total increase during the sample (expert bytes read from disk).{}",
      harness_detail::describe(s.prompt), s.decode_tokens,
      peak_resets ? "the process's resident high-water mark during the sample (VmHWM, reset before each)"
                  : "the process's resident high-water mark since it started (this kernel refused to reset VmHWM)",
      s.interleave ? " Interleaved: every config's model stays loaded and samples run context by context, repetition by "
                     "repetition, config by config."
                   : "");
}

class Recorder {
 public:
  Recorder(ResultsStore& store, int64_t run_id, int64_t total, std::ostream* progress)
      : store_(store), total_(total), progress_(progress) {
    outcome_.run_id = run_id;
  }

  void record(const Sample& s) {
    store_.add_sample(outcome_.run_id, s);
    ++outcome_.samples;
    if (s.error) ++outcome_.errors;
    if (!progress_) return;
    const std::string head = fmt::format("[{:>{}}/{}] {:<10} ctx {:>6} rep {}", outcome_.samples,
                                         fmt::format("{}", total_).size(), total_, s.config, s.context_tokens, s.repetition);
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

 private:
  ResultsStore& store_;
  int64_t total_;
  std::ostream* progress_;
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
    // SSD bytes of the decode alone: counted from the first token's event (one decode step has run by then).
    uint64_t ssd_first_step = ssd_before;
    const GenerationResult res = generate(*session, prompt, greedy, [&](const TokenEvent& ev) {
      if (ev.index == 0) ssd_first_step = model.counters().stream.ssd_bytes_read_total;
      return true;
    });
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
    const uint64_t ssd_after = model.counters().stream.ssd_bytes_read_total;
    s.ssd_bytes_read = static_cast<int64_t>(ssd_after - ssd_before);
    s.decode_ssd_bytes_read = static_cast<int64_t>(ssd_after - ssd_first_step);
    s.output_tokens = res.tokens;
  } catch (const Error& e) {
    s.error = e.what();
  } catch (const std::bad_alloc&) {
    s.error = "out of memory (std::bad_alloc)";
  }
  return s;
}

// A config's model, or why it cannot run (then every sample of the config records that error).
struct Loaded {
  std::shared_ptr<Model> model;
  std::optional<PromptBuilder> prompts;
  std::string cannot_run;
};

Loaded load(const BenchConfig& config, const Scenario& scenario, const std::filesystem::path& model_dir,
            const std::string& model_name, Recorder& rec) {
  Loaded l;
  try {
    l.model = Model::load(model_dir, config.options);
    l.prompts.emplace(scenario.prompt, *l.model);
  } catch (const Error& e) {
    l.cannot_run = fmt::format("config '{}' cannot run on {}: {}", config.name, model_name, e.what());
    rec.say("lmlab bench: " + l.cannot_run + " (recorded as error samples)");
  }
  return l;
}

void sample(Recorder& rec, const Loaded& l, const Scenario& scenario, const BenchConfig& config, int64_t context,
            int64_t rep) {
  if (l.cannot_run.empty()) return rec.record(measure(*l.model, *l.prompts, config.name, context, rep, scenario.decode_tokens));
  Sample s;
  s.config = config.name;
  s.context_tokens = context;
  s.repetition = rep;
  s.error = l.cannot_run;
  rec.record(s);
}

// The config's perplexity on the first perplexity_tokens tokens of the prompt source (teacher forced).
Evaluation evaluate(const Loaded& l, const Scenario& scenario, const BenchConfig& config) {
  Evaluation e;
  e.config = config.name;
  if (!l.cannot_run.empty()) {
    e.error = l.cannot_run;
    return e;
  }
  try {
    const NllResult r = evaluate_nll(*l.model, l.prompts->build(scenario.perplexity_tokens));
    e.tokens = static_cast<int64_t>(r.nll.size());
    for (double x : r.nll) e.nll_sum += x;
  } catch (const Error& ex) {
    e.error = ex.what();
  }
  return e;
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
  info.git_commit = settings.git_commit;
  info.host_fingerprint = settings.host_fingerprint.empty() ? host_fingerprint() : settings.host_fingerprint;
  const bool peak_resets = harness_detail::reset_peak_rss();
  info.notes = run_notes(scenario, peak_resets);

  const int64_t total = static_cast<int64_t>(scenario.configs.size() * scenario.contexts.size()) * scenario.repetitions;
  Recorder rec(store, store.begin_run(info), total, settings.progress);
  rec.say(fmt::format("lmlab bench: run {} — scenario '{}', model {} ({:.1f} MiB), {} samples", rec.outcome().run_id,
                      scenario.name, model_dir.string(), info.model_bytes / 1048576.0, total));
  if (!peak_resets) rec.say("lmlab bench: warning: cannot reset VmHWM; peak memory is the process's lifetime peak");

  auto evaluate_into_store = [&](const Loaded& l, const BenchConfig& config) {
    if (scenario.perplexity_tokens <= 0) return;
    const Evaluation e = evaluate(l, scenario, config);
    store.add_evaluation(rec.outcome().run_id, e);
    rec.say(e.error ? fmt::format("lmlab bench: perplexity of {} failed: {}", config.name, *e.error)
                    : fmt::format("lmlab bench: perplexity of {} over {} tokens: {:.4f}", config.name, e.tokens,
                                  std::exp(e.nll_sum / static_cast<double>(e.tokens))));
  };
  if (scenario.interleave) {
    std::vector<Loaded> loaded;
    for (const BenchConfig& config : scenario.configs) loaded.push_back(load(config, scenario, model_dir, info.model, rec));
    for (int64_t context : scenario.contexts)
      for (int64_t rep = 0; rep < scenario.repetitions; ++rep)
        for (size_t i = 0; i < scenario.configs.size(); ++i) sample(rec, loaded[i], scenario, scenario.configs[i], context, rep);
    for (size_t i = 0; i < scenario.configs.size(); ++i) evaluate_into_store(loaded[i], scenario.configs[i]);
  } else {
    for (const BenchConfig& config : scenario.configs) {
      const Loaded l = load(config, scenario, model_dir, info.model, rec);
      for (int64_t context : scenario.contexts)
        for (int64_t rep = 0; rep < scenario.repetitions; ++rep) sample(rec, l, scenario, config, context, rep);
      evaluate_into_store(l, config);
    }
  }
  return rec.outcome();
}

}  // namespace lmlab
