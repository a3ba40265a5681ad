// lmlab decode-bench --model DIR --contexts 4096,16384,32768 [-n 32] [--warmup 1] [--decode-tokens greedy|random]
// [KV flags]: decode speed at a given context length. Prefills seeded random tokens (untimed beyond the printed
// prefill rate) to each context, then times n single-token decode steps. One line per context; --json for one
// object per line.
// Each step's input is the greedy pick of the last logits, or with --decode-tokens random a seeded random id (the
// pick still made, so the host's work per step is the same): a synth model's greedy decode soon repeats one token,
// and with it a MoE's routing, so a streamed decode would hit its expert cache as no text does.
// Warm-up, as llama-bench does before it times: an untimed prefill and decode step before the first context (the
// first calls load cuBLAS and the kernels' modules), and --warmup untimed decode steps before each context's timed
// ones (the first decode step of a session captures its CUDA graph).
#include <fmt/format.h>

#include <chrono>
#include <numeric>
#include <nlohmann/json.hpp>
#include <random>
#include <string>

#include "common.h"
#include "lmlab/generate.h"
#include "lmlab/results.h"

namespace lmlab::cli {

namespace {

struct Flags {
  EngineFlags engine;
  std::vector<int64_t> contexts = {4096};
  int64_t n = 32;
  int64_t warmup = 1;
  std::string decode_tokens = "greedy";  // or "random"
  bool json = false;
};

int64_t ns_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count();
}

int run_decode_bench(const Flags& fl) {
  auto model = Model::load(fl.engine.model, fl.engine.options());
  const ModelInfo& info = model->info();
  std::mt19937_64 rng(42), decode_rng(7);
  const bool random_inputs = fl.decode_tokens == "random";
  SamplingParams greedy;
  uint64_t rng_state = 0;
  if (fl.warmup > 0 && !fl.contexts.empty()) {
    std::vector<int32_t> prompt(static_cast<size_t>(std::min<int64_t>(fl.contexts.front(), 512)));
    for (auto& t : prompt) t = static_cast<int32_t>(rng() % info.vocab);
    auto session = model->new_session();
    const int32_t next = sample_token(session->append(prompt), greedy, rng_state);
    session->append(std::span<const int32_t>(&next, 1));
  }
  for (int64_t ctx : fl.contexts) {
    if (ctx + fl.warmup + fl.n > info.ctx_size)
      throw Error(ErrorKind::invalid_input, "--contexts",
                  fmt::format("{} + {} + {} tokens (context, warm-up, timed steps) exceed the context size {} (raise "
                              "--ctx-size)",
                              ctx, fl.warmup, fl.n, info.ctx_size));
    std::vector<int32_t> prompt(static_cast<size_t>(ctx));
    for (auto& t : prompt) t = static_cast<int32_t>(rng() % info.vocab);
    auto session = model->new_session();
    // Raw samples: the prefill's and every decode step's nanoseconds; the figures are results' arithmetic.
    auto t0 = std::chrono::steady_clock::now();
    auto logits = session->append(prompt);
    const int64_t prefill_ns = ns_since(t0);
    int32_t next = sample_token(logits, greedy, rng_state);
    // The next step's input: the greedy pick, or (--decode-tokens random) a seeded random id after making it.
    auto input = [&](int32_t picked) {
      return random_inputs ? static_cast<int32_t>(decode_rng() % info.vocab) : picked;
    };
    next = input(next);
    for (int64_t i = 0; i < fl.warmup; ++i)
      next = input(sample_token(session->append(std::span<const int32_t>(&next, 1)), greedy, rng_state));
    const ModelCounters before_all = model->counters();
    const StreamCounters& before = before_all.stream;
    std::vector<int64_t> step_ns;
    for (int64_t i = 0; i < fl.n; ++i) {
      t0 = std::chrono::steady_clock::now();
      logits = session->append(std::span<const int32_t>(&next, 1));
      next = input(sample_token(logits, greedy, rng_state));
      step_ns.push_back(ns_since(t0));
    }
    const DecodeBenchFigures f = decode_bench_figures(ctx, prefill_ns, step_ns);
    const ModelCounters c = model->counters();
    const StreamCounters io = c.stream.since(before);  // the timed decode steps' expert streaming
    const std::string kv_mode(kv_mode_name(model->options().kv_mode));
    nlohmann::json row = {{"model", info.dir.filename().string()}, {"context", ctx}, {"decode_tokens", fl.n},
                          {"decode_inputs", fl.decode_tokens},
                          {"decode_tok_s", f.decode_tok_s}, {"prefill_tok_s", f.prefill_tok_s},
                          {"step_ms_p50", f.step_ms_p50}, {"step_ms_p90", f.step_ms_p90},
                          {"kv_cache_bytes", c.kv_cache_bytes}, {"options", nlohmann::json::parse(options_to_json_text(model->options()))}};
    // The device's busy time per replayed step (a graph decode): the rest of step_ms is the host's, between steps.
    const uint64_t device_steps = c.device_decode_steps - before_all.device_decode_steps;
    const double device_step_ms =
        device_steps ? (c.device_decode_ns - before_all.device_decode_ns) * 1e-6 / static_cast<double>(device_steps) : 0.0;
    if (device_steps) row["device_step_ms"] = device_step_ms;
    if (model->options().stream_experts)
      row["decode_streaming"] = {{"ssd_bytes", io.ssd_bytes_read_total},
                                 {"ssd_reads", io.ssd_reads_total},
                                 {"ssd_read_seconds", io.ssd_read_seconds_total},
                                 {"expert_cache_hits", io.expert_cache_hits_total},
                                 {"expert_cache_misses", io.expert_cache_misses_total},
                                 {"expert_prefetches", io.expert_prefetch_total},
                                 {"expert_prefetches_used", io.expert_prefetch_used_total},
                                 {"device_expert_cache_misses", io.device_expert_cache_misses_total}};
    if (fl.json) fmt::print("{}\n", row.dump());
    else
      fmt::print("context {:>6}: decode {:8.2f} tok/s (step p50 {:.2f} ms, p90 {:.2f} ms)  prefill {:8.1f} tok/s  kv "
                 "{:8.2f} MiB  ({})\n",
                 ctx, f.decode_tok_s, f.step_ms_p50, f.step_ms_p90, f.prefill_tok_s, c.kv_cache_bytes / 1048576.0, kv_mode);
    if (!fl.json && device_steps) fmt::print("  device busy {:.3f} ms a step ({} graph steps)\n", device_step_ms, device_steps);
    if (!fl.json && model->options().stream_experts) {
      const double seconds = std::accumulate(step_ns.begin(), step_ns.end(), int64_t{0}) * 1e-9;
      const double reading = io.ssd_read_seconds_total;
      fmt::print("  decode streaming: {:.1f} MB read ({:.1f} MB/s over the decode, {:.1f} MB/s while reading), {} misses / "
                 "{} hits, {} prefetched ({} used)\n",
                 io.ssd_bytes_read_total / 1e6, seconds > 0 ? io.ssd_bytes_read_total / 1e6 / seconds : 0.0,
                 reading > 0 ? io.ssd_bytes_read_total / 1e6 / reading : 0.0,
                 io.expert_cache_misses_total, io.expert_cache_hits_total, io.expert_prefetch_total,
                 io.expert_prefetch_used_total);
    }
  }
  return 0;
}

}  // namespace

void register_decode_bench(CLI::App& app) {
  auto fl = std::make_shared<Flags>();
  auto* sub = app.add_subcommand("decode-bench", "decode tok/s at given context lengths");
  fl->engine.add_to(*sub);
  sub->add_option("--contexts", fl->contexts, "context lengths")->delimiter(',')->check(CLI::PositiveNumber);
  sub->add_option("-n", fl->n, "decode steps timed per context")->check(CLI::PositiveNumber);
  sub->add_option("--warmup", fl->warmup,
                  "untimed decode steps before each context's timed ones; 0 also skips the warm-up prefill before "
                  "the first context (default 1)")
      ->check(CLI::Range(0, 1 << 20));
  sub->add_option("--decode-tokens", fl->decode_tokens,
                  "each decode step's input: greedy (the last logits' pick) or random (seeded ids: a synth's greedy "
                  "decode repeats one token, and a MoE's routing with it)")
      ->check(CLI::IsMember({"greedy", "random"}))
      ->capture_default_str();
  sub->add_flag("--json", fl->json, "one JSON object per context");
  sub->callback(guarded([fl] { return run_decode_bench(*fl); }));
}

}  // namespace lmlab::cli
