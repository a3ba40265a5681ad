// lmlab generate --model DIR --prompt TEXT -n N: streams text to stdout, statistics to stderr.
#include <fmt/format.h>

#include <cstdio>

#include "common.h"
#include "flag_checks.h"
#include "lmlab/generate.h"
#include "lmlab/results.h"

namespace lmlab::cli {

namespace {

struct Flags {
  EngineFlags engine;
  std::string prompt;
  int64_t n = 64;
  float temperature = 0.0f, top_p = 1.0f;
  int top_k = 0;
  uint64_t seed = 0;
  bool raw = false;  // no BOS even if the tokenizer's post-processor adds one
};

int run_generate(const Flags& fl) {
  auto model = Model::load(fl.engine.model, fl.engine.options());
  const Tokenizer& tok = model->tokenizer();
  std::vector<int32_t> ids = tok.encode(fl.prompt, !fl.raw);
  if (ids.empty()) throw Error(ErrorKind::invalid_input, "--prompt", "the prompt encodes to no tokens");
  SamplingParams sp;
  sp.max_tokens = fl.n;
  sp.temperature = fl.temperature;
  sp.top_p = fl.top_p;
  sp.top_k = fl.top_k;
  sp.seed = fl.seed;
  auto session = model->new_session();
  std::fputs(fl.prompt.c_str(), stdout);
  auto res = generate(*session, ids, sp, [](const TokenEvent& ev) {
    std::fputs(ev.text.c_str(), stdout);
    std::fflush(stdout);
    return true;
  });
  std::fputs("\n", stdout);
  const auto& s = res.stats;
  const double prompt_tps = per_second(static_cast<double>(s.prompt_tokens), s.prompt_ns * 1e-9);
  const double decode_tps = per_second(static_cast<double>(s.decode_tokens), s.decode_ns * 1e-9);
  fmt::print(stderr, "prompt: {} tokens, {:.1f} tok/s | decode: {} tokens, {:.1f} tok/s | kv {:.2f} MiB | peak rss {:.1f} MiB\n",
             s.prompt_tokens, prompt_tps, s.decode_tokens, decode_tps, s.kv_bytes / 1048576.0,
             s.peak_bytes / 1048576.0);
  if (model->options().stream_experts) {
    const StreamCounters c = model->counters().stream;
    const uint64_t lookups = c.expert_cache_hits_total + c.expert_cache_misses_total;
    const double mib = c.ssd_bytes_read_total / 1048576.0;
    fmt::print(stderr,
               "experts: ssd {:.2f} MiB in {} reads, {:.3f} s reading ({:.1f} MiB/s) | cache hits {}/{} ({:.1f}%) | "
               "cache {:.2f} MiB\n",
               mib, c.ssd_reads_total, c.ssd_read_seconds_total,
               per_second(mib, c.ssd_read_seconds_total), c.expert_cache_hits_total, lookups,
               lookups ? 100.0 * c.expert_cache_hits_total / lookups : 0.0, c.expert_cache_bytes / 1048576.0);
  }
  return 0;
}

}  // namespace

void register_generate(CLI::App& app) {
  auto fl = std::make_shared<Flags>();
  auto* sub = app.add_subcommand("generate", "generate text from a prompt");
  fl->engine.add_to(*sub);
  sub->add_option("--prompt", fl->prompt, "prompt text")->required();
  sub->add_option("-n,--max-tokens", fl->n, "tokens to generate")->check(CLI::PositiveNumber);
  sub->add_option("--temperature", fl->temperature, "0 = greedy")->check(finite_at_least(0));
  sub->add_option("--top-p", fl->top_p, "nucleus mass, in (0, 1]")->check(finite_range(0, 1, true));
  sub->add_option("--top-k", fl->top_k, "0 = off")->check(CLI::NonNegativeNumber);
  sub->add_option("--seed", fl->seed);
  sub->add_flag("--raw", fl->raw, "do not add the tokenizer's special tokens (BOS)");
  sub->callback(guarded([fl] { return run_generate(*fl); }));
}

}  // namespace lmlab::cli
