// The regression suite's runner (see lmlab/regression.h for the sequence and the checks).
//
// Expected prompt-cache counts are derived, never recorded from an earlier run. With B = block_tokens, a
// request whose prompt of L tokens shares c tokens with what the cache holds reuses floor(min(c, L-1) / B) * B
// tokens (the last prompt token always runs), counted as one hit when that is > 0. Sliding-window layers
// keep only the blocks their window still covers, so a prefix that ends deep inside an earlier prompt (more
// than window + prefill chunk + 2 blocks before its end) cannot resume on a windowed model: 0 there; a prompt
// stored whole resumes at its last block boundary on any model.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <fstream>
#include <latch>
#include <map>
#include <nlohmann/json.hpp>
#include <ostream>
#include <random>
#include <thread>

#include "http_client.h"
#include "http_sample.h"
#include "lmlab/error.h"
#include "lmlab/options.h"
#include "lmlab/harness.h"
#include "lmlab/model.h"
#include "lmlab/regression.h"
#include "lmlab/synth.h"
#include "progress_eta.h"
#include "sample_source.h"
#include "prometheus_text.h"
#include "serve_process.h"
#include "text_file.h"

namespace lmlab {

namespace {

using namespace harness_detail;
using json = nlohmann::json;

struct Answer {
  std::string text;
  int64_t completion_tokens = 0;
};
using References = std::map<std::string, std::map<std::string, Answer>>;  // model -> prompt name -> answer

struct Prompt {
  std::string key;   // "long", "short", "long_b": what references are keyed by
  std::vector<int32_t> ids;
};

struct Step {
  std::string name;  // "1 long", ...
  const Prompt* prompt;
  int64_t hits, hit_tokens;  // expected prompt-cache counts of this step alone
};

std::vector<int32_t> random_ids(std::mt19937_64& rng, int64_t n, int64_t vocab) {
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (auto& id : ids) id = static_cast<int32_t>(rng() % static_cast<uint64_t>(vocab));
  return ids;
}

json request_body(const Prompt& p, int64_t max_tokens) {
  return {{"prompt", p.ids}, {"max_tokens", max_tokens}, {"temperature", 0}, {"ignore_eos", true}};
}

// The lmlab_ counters a check needs, from one /metrics scrape (nullopt: the server did not answer).
struct Counters {
  double hits = 0, hit_tokens = 0, errors = 0, kv_peak = 0, rss_peak = 0, prompt_cache_bytes = 0;
};
std::optional<Counters> scrape(const HttpTarget& t, std::string& why) {
  const auto body = http_get(t, "/metrics");
  if (!body) {
    why = "unavailable: /metrics did not answer";
    return std::nullopt;
  }
  try {
    const PrometheusText m = PrometheusText::parse(*body);
    Counters c;
    std::vector<std::string> missing;
    auto get = [&](const char* name, double& to) {
      if (auto v = m.value(std::string("lmlab_") + name)) to = *v;
      else missing.push_back(std::string("lmlab_") + name);
    };
    get("prompt_cache_hits_total", c.hits);
    get("prompt_cache_hit_tokens_total", c.hit_tokens);
    get("requests_errors_total", c.errors);
    get("kv_cache_peak_bytes", c.kv_peak);
    get("memory_peak_bytes", c.rss_peak);
    get("prompt_cache_bytes", c.prompt_cache_bytes);
    if (!missing.empty()) {
      why = fmt::format("unavailable: /metrics has no {}", fmt::join(missing, ", "));
      return std::nullopt;
    }
    return c;
  } catch (const Error& e) {
    why = std::string("unavailable: ") + e.what();
    return std::nullopt;
  }
}

References read_references(const std::filesystem::path& file) {
  const std::string text = read_text_file(file, "references file");
  const json j = json::parse(text, nullptr, false);
  if (!j.is_object()) throw Error(ErrorKind::invalid_input, file.string(), "not a JSON object of model -> prompt -> answer");
  References refs;
  for (const auto& [model, prompts] : j.items()) {
    if (!prompts.is_object()) throw Error(ErrorKind::invalid_input, file.string() + ": " + model, "must be an object");
    for (const auto& [key, a] : prompts.items()) {
      const std::string where = fmt::format("{}: {}.{}", file.string(), model, key);
      if (!a.is_object() || !a.contains("text") || !a["text"].is_string() || !a.contains("completion_tokens") ||
          !a["completion_tokens"].is_number_integer())
        throw Error(ErrorKind::invalid_input, where, "must be {\"text\": string, \"completion_tokens\": integer}");
      refs[model][key] = {a["text"].get<std::string>(), a["completion_tokens"].get<int64_t>()};
    }
  }
  return refs;
}

void write_references(const std::filesystem::path& file, const References& refs) {
  json j = json::object();
  for (const auto& [model, prompts] : refs)
    for (const auto& [key, a] : prompts) j[model][key] = {{"text", a.text}, {"completion_tokens", a.completion_tokens}};
  std::ofstream out(file, std::ios::binary);
  out << j.dump(2) << "\n";
  if (!out) throw Error(ErrorKind::io, file.string(), "cannot write the references file");
}

// The engine options of the server under test (the rest at the option table's defaults).
ModelOptions server_options(const RegressionScenario& s, int64_t prompt_cache_mb) {
  ModelOptions o;
  o.ctx_size = s.ctx_size;
  o.prefill_size = s.prefill_size;
  o.prompt_cache_mb = prompt_cache_mb;
  o.kv_budget_mb = s.kv_budget_mb;
  o.threads = static_cast<int>(s.threads);
  return o;
}

std::vector<std::string> serve_args(const RegressionScenario& s, int64_t prompt_cache_mb, int parallel) {
  std::vector<std::string> a = serve_flags(server_options(s, prompt_cache_mb));
  a.insert(a.end(), {"--parallel", std::to_string(parallel)});  // a server flag, not an engine option
  return a;
}

std::filesystem::path model_dir_of(const RegressionModel& m, const RegressionSettings& settings, std::ostream* progress) {
  if (m.dir) return *m.dir;
  const RegressionSynth& syn = *m.synth;
  SynthOptions opt;
  opt.shape = synth_default_shape(syn.arch);
  if (syn.layers) opt.shape.layers = syn.layers;
  if (syn.sliding_window) opt.shape.sliding_window = syn.sliding_window;
  if (syn.max_positions) opt.shape.max_positions = syn.max_positions;
  opt.seed = syn.seed;
  opt.tokenizer_from = syn.tokenizer_from;
  // The directory's name holds everything that shapes the model, so a reused directory is the same model.
  const auto dir = settings.work_dir / fmt::format("{}-{}-l{}-w{}-p{}-s{}", m.name, syn.arch, opt.shape.layers,
                                                   opt.shape.sliding_window, opt.shape.max_positions, syn.seed);
  if (std::filesystem::exists(dir / "config.json")) return dir;
  if (progress) *progress << fmt::format("lmlab regression: synthesizing {} into {}\n", m.name, dir.string()) << std::flush;
  std::filesystem::remove_all(dir);
  synth_model(dir, opt);
  return dir;
}

class Suite {
 public:
  Suite(const RegressionScenario& s, ResultsStore& store, int64_t run, const RegressionSettings& settings,
        ProgressEta& eta)
      : s_(s), store_(store), run_(run), settings_(settings), eta_(eta) {}

  std::vector<RegressionCheck> checks;

  void run_model(const RegressionModel& m, References& refs) {
    const std::filesystem::path dir = model_dir_of(m, settings_, settings_.progress);
    const auto model = Model::load(dir);  // for the vocabulary and the layers' windows only
    const ModelInfo& info = model->info();
    int64_t window = 0;
    for (int64_t w : info.layer_windows) window = std::max(window, w);
    const int64_t B = s_.block_tokens;
    if (window > 0 && s_.shared_prefix_tokens + window + s_.prefill_size + 2 * B > s_.long_tokens)
      throw Error(ErrorKind::invalid_input, s_.file.string() + ": field 'shared_prefix_tokens'",
                  fmt::format("with {}'s window of {} the long prompts' shared prefix must end at least window + "
                              "prefill_size + 2 blocks ({}) before the first long prompt's end, or the expected "
                              "prompt-cache count of step 3 is not exact",
                              m.name, window, window + s_.prefill_size + 2 * B));

    std::mt19937_64 rng(s_.seed);
    const Prompt long_a{"long", random_ids(rng, s_.long_tokens, info.vocab)};
    const Prompt short_p{"short", random_ids(rng, s_.short_tokens, info.vocab)};
    Prompt long_b{"long_b", std::vector<int32_t>(long_a.ids.begin(), long_a.ids.begin() + s_.shared_prefix_tokens)};
    const auto tail = random_ids(rng, s_.second_long_tokens - s_.shared_prefix_tokens, info.vocab);
    long_b.ids.insert(long_b.ids.end(), tail.begin(), tail.end());

    auto full = [&](const Prompt& p) { return (static_cast<int64_t>(p.ids.size()) - 1) / B * B; };
    const int64_t shared_hit = window > 0 ? 0 : s_.shared_prefix_tokens / B * B;
    const std::vector<Step> steps = {
        {"1 long", &long_a, 0, 0},
        {"2 short", &short_p, 0, 0},
        {"3 long (shares a prefix)", &long_b, shared_hit > 0 ? 1 : 0, shared_hit},
        {"4 long again", &long_b, 1, full(long_b)},
    };

    if (!refs.count(m.name)) {
      eta_.say(fmt::format("{}: cold references (prompt cache off, one request at a time)", m.name));
      ServeProcess cold(settings_.lmlab_exe, dir, serve_args(s_, 0, 1));
      for (const Prompt* p : std::initializer_list<const Prompt*>{&long_a, &short_p, &long_b}) {
        const StreamedCompletion r = stream_completion(cold.target(), request_body(*p, s_.max_tokens));
        if (r.error)
          throw Error(ErrorKind::io, cold.command(), fmt::format("the cold reference for the {} prompt failed: {}", p->key, *r.error));
        refs[m.name][p->key] = {r.text, r.completion_tokens};
        eta_.step(fmt::format("{}: reference {}", m.name, p->key));
      }
    } else {
      eta_.skip(3);
    }
    const auto& ref = refs[m.name];
    for (const char* key : {"long", "short", "long_b"})
      if (!ref.count(key))
        throw Error(ErrorKind::invalid_input, "--references", fmt::format("no answer for {}'s '{}' prompt", m.name, key));

    std::optional<ServeProcess> fresh;
    HttpTarget target;
    if (settings_.url) {
      target = parse_http_url(*settings_.url);
    } else {
      fresh.emplace(settings_.lmlab_exe, dir, serve_args(s_, s_.prompt_cache_mb, s_.parallel));
      target = fresh->target();
    }
    eta_.say(fmt::format("{}: server under test at {}", m.name, target.url()));

    std::string why;
    std::optional<Counters> first = scrape(target, why), before = first;
    for (const Step& st : steps) {
      const StreamedCompletion r = stream_completion(target, request_body(*st.prompt, s_.max_tokens));
      record_answer(m.name, st.name, r, ref.at(st.prompt->key), *st.prompt);
      const std::optional<Counters> after = scrape(target, why);
      cache_checks(m.name, st.name, before, after, why, st.hits, st.hit_tokens);
      before = after;
      eta_.step(fmt::format("{}: step {}", m.name, st.name));
    }

    // The same four at once: each thread waits at the latch so the requests leave together. On a busy machine a
    // thread can be scheduled so late that a cached short answer is done before the last request is sent; then the
    // round did not test concurrency (a client-side miss, not a server fault) and runs again, at most 3 times.
    std::vector<StreamedCompletion> results(steps.size());
    int64_t last_sent = 0, first_done = INT64_MAX;
    for (int attempt = 0; attempt < 3; ++attempt) {
      if (attempt > 0) before = scrape(target, why);
      std::latch go(static_cast<std::ptrdiff_t>(steps.size()));
      std::vector<std::thread> threads;
      for (size_t i = 0; i < steps.size(); ++i)
        threads.emplace_back([&, i] {
          go.arrive_and_wait();
          results[i] = stream_completion(target, request_body(*steps[i].prompt, s_.max_tokens));
        });
      for (auto& t : threads) t.join();
      last_sent = 0, first_done = INT64_MAX;
      for (const StreamedCompletion& r : results) {
        last_sent = std::max(last_sent, r.sent_at_ns);
        first_done = std::min(first_done, r.done_at_ns);
      }
      if (last_sent < first_done) break;
    }
    int64_t hits = 0, hit_tokens = 0;
    for (size_t i = 0; i < steps.size(); ++i) {
      record_answer(m.name, "5 concurrent: " + steps[i].name, results[i], ref.at(steps[i].prompt->key), *steps[i].prompt);
      // After phase one the cache holds every prompt whole, so each one resumes at its last block boundary.
      const int64_t h = steps[i].prompt == &short_p ? 0 : full(*steps[i].prompt);
      hits += h > 0 ? 1 : 0;
      hit_tokens += h;
    }
    check(m.name, "5 concurrent", "overlap", "all 4 requests in flight at one moment",
          fmt::format("last sent {:.1f} ms {} the first finished", std::abs(first_done - last_sent) / 1e6,
                      last_sent < first_done ? "before" : "after"),
          last_sent < first_done);
    const std::optional<Counters> after = scrape(target, why);
    cache_checks(m.name, "5 concurrent", before, after, why, hits, hit_tokens);
    eta_.step(fmt::format("{}: concurrent", m.name));

    budget_checks(m.name, first, after, why);
  }

 private:
  void check(const std::string& model, const std::string& step, const std::string& what, const std::string& expected,
             const std::string& got, bool pass) {
    RegressionCheck c{model, step, what, expected, got, pass};
    store_.add_regression_check(run_, c);
    checks.push_back(std::move(c));
  }

  void record_answer(const std::string& model, const std::string& step, const StreamedCompletion& r, const Answer& ref,
                     const Prompt& p) {
    store_.add_sample(run_, sample_from_stream(r, model + " " + step, static_cast<int64_t>(p.ids.size()), 0,
                                               static_cast<int64_t>(p.ids.size())));
    check(model, step, "status", "200, no error", r.error ? *r.error : std::to_string(r.status), !r.error && r.status == 200);
    if (r.error) return;  // an answer that never came is not compared (the status check already failed)
    check(model, step, "answer", ref.text, r.text, r.text == ref.text);
    check(model, step, "completion_tokens", std::to_string(ref.completion_tokens), std::to_string(r.completion_tokens),
          r.completion_tokens == ref.completion_tokens);
  }

  void cache_checks(const std::string& model, const std::string& step, const std::optional<Counters>& before,
                    const std::optional<Counters>& after, const std::string& why, int64_t hits, int64_t hit_tokens) {
    auto delta = [&](double Counters::*f) {
      return before && after ? fmt::format("{}", static_cast<int64_t>(after.value().*f - before.value().*f)) : why;
    };
    check(model, step, "prompt_cache_hits", std::to_string(hits), delta(&Counters::hits), delta(&Counters::hits) == std::to_string(hits));
    check(model, step, "prompt_cache_hit_tokens", std::to_string(hit_tokens), delta(&Counters::hit_tokens),
          delta(&Counters::hit_tokens) == std::to_string(hit_tokens));
  }

  void budget_checks(const std::string& model, const std::optional<Counters>& first, const std::optional<Counters>& last,
                     const std::string& why) {
    auto within = [&](const char* what, double Counters::*f, int64_t budget_mb) {
      const int64_t budget = budget_mb << 20;
      if (!last) return check(model, "budgets", what, fmt::format("<= {} MiB", budget_mb), why, false);
      const double got = last.value().*f;
      check(model, "budgets", what, fmt::format("<= {} MiB", budget_mb), fmt::format("{:.1f} MiB", got / 1048576.0),
            got <= static_cast<double>(budget));
    };
    within("kv_cache_peak_bytes", &Counters::kv_peak, s_.kv_budget_mb);
    within("prompt_cache_bytes", &Counters::prompt_cache_bytes, s_.prompt_cache_mb);
    within("memory_peak_bytes (RSS)", &Counters::rss_peak, s_.rss_budget_mb);
    check(model, "budgets", "requests_errors_total", "0 new",
          first && last ? fmt::format("{} new", static_cast<int64_t>(last->errors - first->errors)) : why,
          first && last && last->errors == first->errors);
  }

  const RegressionScenario& s_;
  ResultsStore& store_;
  int64_t run_;
  const RegressionSettings& settings_;
  ProgressEta& eta_;
};

}  // namespace

std::vector<RegressionCheck> RegressionOutcome::failures() const {
  std::vector<RegressionCheck> out;
  for (const auto& c : checks)
    if (!c.pass) out.push_back(c);
  return out;
}

RegressionOutcome run_regression(const RegressionScenario& scenario, ResultsStore& store, const RegressionSettings& settings) {
  std::vector<const RegressionModel*> models;
  for (const auto& m : scenario.models)
    if (settings.only_models.empty() ||
        std::find(settings.only_models.begin(), settings.only_models.end(), m.name) != settings.only_models.end())
      models.push_back(&m);
  for (const auto& name : settings.only_models)
    if (std::none_of(scenario.models.begin(), scenario.models.end(), [&](const auto& m) { return m.name == name; }))
      throw Error(ErrorKind::invalid_input, "--models", fmt::format("'{}' is not a model of {}", name, scenario.file.string()));
  if (settings.url && models.size() != 1)
    throw Error(ErrorKind::invalid_input, "--url", fmt::format("a running server holds one model: pick one of the scenario's {} with --models", scenario.models.size()));
  if (settings.url) parse_http_url(*settings.url);  // a bad URL is refused before anything runs

  References refs;
  if (settings.references_in) refs = read_references(*settings.references_in);

  RunInfo info;
  info.host = settings.host.empty() ? host_name() : settings.host;
  info.scenario = scenario.name;
  std::vector<std::string> names;
  for (const auto* m : models) names.push_back(m->name);
  info.model = fmt::format("{}", fmt::join(names, ", "));
  info.engine_config_json = json{{"scenario_file", scenario.file.string()},
                                 {"mode", settings.url ? "url" : "serve"},
                                 {"url", settings.url.value_or("")},
                                 {"server", json::parse(options_to_json_text(server_options(scenario, scenario.prompt_cache_mb)))},
                                 {"parallel", scenario.parallel},
                                 {"rss_budget_mb", scenario.rss_budget_mb}}
                                .dump();
  info.git_commit = settings.git_commit;
  info.host_fingerprint = host_fingerprint();
  info.notes = "Regression suite: long -> short -> long sharing a prefix -> the long again, then the four at once; "
               "temperature 0, EOS ignored; samples are per request, measured from the SSE stream.";
  RegressionOutcome out;
  out.run_id = store.begin_run(info);
  ProgressEta eta(settings.progress, "lmlab regression", static_cast<int64_t>(models.size()) * 8);
  eta.say(fmt::format("run {}: scenario '{}', models {}", out.run_id, scenario.name, info.model));
  Suite suite(scenario, store, out.run_id, settings, eta);
  for (const auto* m : models) suite.run_model(*m, refs);
  if (settings.references_out) write_references(*settings.references_out, refs);
  store.end_run(out.run_id);
  out.checks = std::move(suite.checks);
  return out;
}

}  // namespace lmlab
