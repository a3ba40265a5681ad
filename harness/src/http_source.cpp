// Sample sources over HTTP: an `lmlab serve` subprocess started with a config's options, or a server at a URL.
// Each sample is one streamed /v1/completions request (prompt as token ids, temperature 0, ignore_eos) timed
// chunk by chunk; the server's lmlab_ /metrics, when it has them, add peak memory, KV bytes and SSD bytes.
#include <fmt/format.h>

#include <optional>

#include "http_client.h"
#include "http_sample.h"
#include "lmlab/error.h"
#include "lmlab/options.h"
#include "prometheus_text.h"
#include "prompt_builder.h"
#include "sample_source.h"
#include "serve_process.h"

namespace lmlab::harness_detail {

namespace {

struct ServerCounters {
  double peak = 0, kv = 0, ssd = 0;
  double device_peak = 0;  // lmlab_memory_device_peak_bytes: 0 on a CPU server
};

// nullopt when the server has no lmlab_ metrics (another runtime) or does not answer.
std::optional<ServerCounters> lmlab_counters(const HttpTarget& t) {
  const auto body = http_get(t, "/metrics");
  if (!body) return std::nullopt;
  try {
    const PrometheusText m = PrometheusText::parse(*body);
    const auto peak = m.value("lmlab_memory_peak_bytes"), kv = m.value("lmlab_kv_cache_peak_bytes");
    if (!peak || !kv) return std::nullopt;
    return ServerCounters{*peak, *kv, m.value("lmlab_ssd_bytes_read_total").value_or(0),
                          m.value("lmlab_memory_device_peak_bytes").value_or(0)};
  } catch (const Error&) {
    return std::nullopt;  // a /metrics page that is not Prometheus text: the stream figures still stand
  }
}

// What a server says it is: llama.cpp's /props build_info, an lmlab server's commit, else "unknown".
std::string server_version(const HttpTarget& t) {
  if (const auto props = http_get(t, "/props")) {
    const auto j = nlohmann::json::parse(*props, nullptr, false);
    if (j.is_object() && j.contains("build_info") && j["build_info"].is_string())
      return "llama.cpp " + j["build_info"].get<std::string>();
  }
  return "unknown";
}

class HttpSource final : public SampleSource {
 public:
  HttpSource(HttpTarget target, std::unique_ptr<ServeProcess> server, const std::filesystem::path& model_dir,
             const PromptSource& prompt, std::string version)
      : target_(std::move(target)), server_(std::move(server)), prompts_(prompt, model_dir), version_(std::move(version)) {}

  std::string version() const override { return version_; }

  Sample measure(const std::string& config, int64_t context, int64_t rep, int64_t decode_tokens) override {
    const auto before = lmlab_counters(target_);
    // cache_prompt false: llama.cpp's server would otherwise reuse the previous repetition's identical prompt
    // (lmlab's serve passes have no prompt cache unless a config sets one; other servers ignore the key).
    const nlohmann::json body = {{"prompt", prompts_.build(context)}, {"max_tokens", decode_tokens},
                                 {"temperature", 0}, {"ignore_eos", true}, {"cache_prompt", false}};
    const StreamedCompletion r = stream_completion(target_, body);
    Sample s = sample_from_stream(r, config, context, rep, context);
    if (!s.error && r.completion_tokens >= 0 && r.completion_tokens != decode_tokens)
      s.error = fmt::format("the server generated {} of the {} tokens asked for (does it honour ignore_eos?)",
                            r.completion_tokens, decode_tokens);
    if (s.error && server_) s.error = *s.error + " (server stderr: " + server_->stderr_tail().substr(0, 300) + ")";
    if (const auto after = lmlab_counters(target_); after && before) {
      s.peak_memory_bytes = static_cast<int64_t>(after->peak);
      s.kv_cache_bytes = static_cast<int64_t>(after->kv);
      s.ssd_bytes_read = static_cast<int64_t>(after->ssd - before->ssd);
      if (after->device_peak > 0) s.gpu_memory_bytes = static_cast<int64_t>(after->device_peak);
    }
    return s;
  }

 private:
  HttpTarget target_;
  std::unique_ptr<ServeProcess> server_;  // owned in serve mode: stopped when the pass ends
  PromptBuilder prompts_;
  std::string version_;
};

}  // namespace

std::vector<std::string> serve_flags(const ModelOptions& o) {
  // Every option of the table, spelled as its flag: serve takes them all (cli EngineFlags).
  std::vector<std::string> a;
  for (const OptionSpec& spec : engine_options()) {
    const OptionValue v = get_option(o, spec);
    if (spec.type == OptionType::boolean) {
      if (std::get<bool>(v) != spec.negated_flag) a.emplace_back(spec.flag);
      continue;
    }
    a.emplace_back(spec.flag);
    a.push_back(spec.type == OptionType::integer ? std::to_string(std::get<int64_t>(v)) : std::get<std::string>(v));
  }
  return a;
}

std::unique_ptr<SampleSource> serve_source(const std::filesystem::path& lmlab_exe, const std::filesystem::path& model_dir,
                                           const ModelOptions& options, const PromptSource& prompt,
                                           const std::string& lmlab_version) {
  auto server = std::make_unique<ServeProcess>(lmlab_exe, model_dir, serve_flags(options));
  const HttpTarget target = server->target();
  return std::make_unique<HttpSource>(target, std::move(server), model_dir, prompt, lmlab_version);
}

std::unique_ptr<SampleSource> url_source(const std::string& url, const std::filesystem::path& model_dir,
                                         const PromptSource& prompt) {
  const HttpTarget target = parse_http_url(url);
  if (!http_get(target, "/health") && !http_get(target, "/v1/models"))
    throw Error(ErrorKind::io, url, "the server does not answer /health or /v1/models");
  return std::make_unique<HttpSource>(target, nullptr, model_dir, prompt, server_version(target));
}

}  // namespace lmlab::harness_detail
