// The in-process sample source: the model loaded once in this process with a config's options; each sample
// gets a fresh session. What each number means (also in the run's notes, runner.cpp):
// - prompt_ns: the engine's prefill time (StepStats.prompt_ns); prompt_tokens: prompt tokens it computed.
// - ttft_ns: the engine's time from the generate() call to the first token sampled (StepStats.ttft_ns): prefill
//   and sampling, not the first token's own decode step.
// - decode_tokens / decode_ns: the engine's decode steps (EOS does not stop them: every sample decodes the
//   same number of tokens); chunk_ns: each token's arrival after the call, as an HTTP client would see it.
// - peak_memory_bytes: the process's resident high-water mark during the sample (reset before each one).
// - kv_cache_bytes: the session's KV storage at the end; ssd_bytes_read: the engine's ssd_bytes_read_total
//   counter's increase during the sample; decode_ssd_bytes_read: its increase after the first decode step.
// - output_tokens: the greedy tokens generated.
// - gpu_memory_bytes (GPU runs only): the engine's device memory as the sample ends (see measure()).
// - drive_read_bps (configs that stream experts, when the decode read anything): the drive's O_DIRECT random-read
//   bandwidth, probed for kDriveProbeSeconds right after the sample on the model's largest .safetensors file, in
//   the decode's pattern: reads of its mean read size in groups of its mean reads per layer step, each group
//   waited for before the next. What the same reads cost on this machine's drive with no compute and no cache
//   logic, measured at the same time as the sample; a drive that is latency-bound at that concurrency shows it.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "http_client.h"
#include "lmlab/error.h"
#include "lmlab/generate.h"
#include "lmlab/iobench.h"
#include "lmlab/perplexity.h"
#include "peak_memory.h"
#include "prompt_builder.h"
#include "sample_source.h"

namespace lmlab::harness_detail {

namespace {

constexpr double kDriveProbeSeconds = 0.25;

// The drive's bandwidth, bytes/s, for `reads` reads totalling `bytes` made over `layer_steps` (decode steps x
// layers): their mean size rounded up to 4 KiB, in groups of their mean count per layer step.
double probe_drive(const std::filesystem::path& model_dir, const ModelOptions& options, uint64_t bytes, uint64_t reads,
                   uint64_t layer_steps) {
  constexpr uint64_t kAlign = 4096;
  IoBenchOptions o;
  o.file = largest_safetensors_file(model_dir);
  o.read_bytes = std::max<uint64_t>(kAlign, (bytes / std::max<uint64_t>(1, reads) + kAlign - 1) / kAlign * kAlign);
  o.queue_depth = std::max(1, options.expert_queue_depth);
  const double per_step = static_cast<double>(reads) / static_cast<double>(std::max<uint64_t>(1, layer_steps));
  o.burst = std::clamp(static_cast<int>(std::lround(per_step)), 1, o.queue_depth);
  o.seconds = kDriveProbeSeconds;
  const IoBenchResult r = run_iobench(o);
  return r.seconds > 0 ? static_cast<double>(r.bytes) / r.seconds : 0.0;
}

class InProcessSource final : public SampleSource {
 public:
  InProcessSource(const std::filesystem::path& model_dir, const ModelOptions& options, const PromptSource& prompt,
                  std::string version)
      : model_dir_(model_dir),
        options_(options),
        model_(Model::load(model_dir, options)),
        prompts_(prompt, *model_),
        version_(std::move(version)) {}

  std::string version() const override { return version_; }

  Evaluation evaluate(const std::string& config, int64_t tokens) override {
    Evaluation e;
    e.config = config;
    try {
      const NllResult r = evaluate_nll(*model_, prompts_.build(tokens));
      e.tokens = static_cast<int64_t>(r.nll.size());
      for (double x : r.nll) e.nll_sum += x;
    } catch (const Error& ex) {
      e.error = ex.what();
    }
    return e;
  }

  Sample measure(const std::string& config, int64_t context, int64_t rep, int64_t decode_tokens) override {
    const Model& model = *model_;
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
      const std::vector<int32_t> prompt = prompts_.build(context);
      reset_peak_rss();
      auto session = model.new_session();
      const uint64_t ssd_before = model.counters().stream.ssd_bytes_read_total;
      SamplingParams greedy;
      greedy.max_tokens = decode_tokens;
      greedy.stop_at_eos = false;
      // SSD bytes of the decode alone: counted from the first token's event (one decode step has run by then).
      uint64_t ssd_first_step = ssd_before, reads_first_step = 0;
      // Each token's arrival, as an HTTP client would see its chunk: the raw data of inter-token latency.
      const int64_t t0 = steady_now_ns();
      const GenerationResult res = generate(*session, prompt, greedy, [&](const TokenEvent& ev) {
        s.chunk_ns.push_back(steady_now_ns() - t0);
        if (ev.index == 0) {
          const StreamCounters c = model.counters().stream;
          ssd_first_step = c.ssd_bytes_read_total;
          reads_first_step = c.ssd_reads_total;
        }
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
      const StreamCounters after = model.counters().stream;
      s.ssd_bytes_read = static_cast<int64_t>(after.ssd_bytes_read_total - ssd_before);
      s.decode_ssd_bytes_read = static_cast<int64_t>(after.ssd_bytes_read_total - ssd_first_step);
      s.output_tokens = res.tokens;
      // GPU runs: the device memory the engine's allocator holds as the sample ends (weights, scratch, this
      // session's KV): scratch is allocated at load and KV only grows during a sample, so this is its peak.
      if (const uint64_t device = model.counters().device_memory_bytes; device > 0)
        s.gpu_memory_bytes = static_cast<int64_t>(device);
      if (options_.stream_experts && s.decode_ssd_bytes_read > 0) {
        try {
          const auto layer_steps = static_cast<uint64_t>(std::max<int64_t>(1, decode_ssd_steps(s)) * model.info().n_layers);
          s.drive_read_bps = probe_drive(model_dir_, options_, static_cast<uint64_t>(s.decode_ssd_bytes_read),
                                         after.ssd_reads_total - reads_first_step, layer_steps);
        } catch (const Error&) {
          // The sample itself succeeded; without a probe its drive_read_bps stays 0 (not probed) and the gate
          // leaves it out of the drive-normalized rows.
        }
      }
    } catch (const Error& e) {
      s.chunk_ns.clear();
      s.error = e.what();
    } catch (const std::bad_alloc&) {
      s.chunk_ns.clear();
      s.error = "out of memory (std::bad_alloc)";
    }
    return s;
  }

 private:
  std::filesystem::path model_dir_;
  ModelOptions options_;
  std::shared_ptr<Model> model_;
  PromptBuilder prompts_;
  std::string version_;
};

}  // namespace

std::unique_ptr<SampleSource> in_process_source(const std::filesystem::path& model_dir, const ModelOptions& options,
                                                const PromptSource& prompt, const std::string& lmlab_version) {
  return std::make_unique<InProcessSource>(model_dir, options, prompt, lmlab_version);
}

}  // namespace lmlab::harness_detail
