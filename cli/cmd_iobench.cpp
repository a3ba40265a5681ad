// lmlab iobench --file F [--read-kb 256] [--qd 8] [--burst N] [--seconds 5] [--backend uring|threads] [--json]:
// the drive's O_DIRECT random-read bandwidth at one read size and queue depth (the streaming ceiling), or with
// --burst N in groups of N reads each waited for (decode's pattern: one layer's missing experts at a time).
// With --model DIR (a MoE) instead of or beside --file: the expert streamer's cold decode read path under
// random routing, next to the drive's ceiling measured on the model's largest shard at the streamer's read
// size and the same queue depth.
#include <fmt/format.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "common.h"
#include "lmlab/iobench.h"
#include "lmlab/results.h"

namespace lmlab::cli {

namespace {

struct Flags {
  std::string file, model;
  int64_t read_kb = 256;
  int qd = 8;
  int burst = 0;
  double seconds = 5.0;
  std::string backend = "uring";
  EngineFlags engine;  // --expert-cache-mb, --expert-cache-policy
  bool json = false;
};

// The engine's raw result with the lab's figures (results: per_second, latency_figures).
nlohmann::json raw_json(const IoBenchResult& r) {
  nlohmann::json j = nlohmann::json::parse(r.to_json());
  const LatencyFigures lat = latency_figures(r.latencies_s);
  j["bytes_per_second"] = per_second(static_cast<double>(r.bytes), r.seconds);
  j["iops"] = per_second(static_cast<double>(r.reads), r.seconds);
  j["latency_p50_s"] = lat.p50_s;
  j["latency_p99_s"] = lat.p99_s;
  j["latency_max_s"] = lat.max_s;
  return j;
}

nlohmann::json stream_json(const ExpertStreamBenchResult& s) {
  nlohmann::json j = nlohmann::json::parse(s.to_json());
  j["bytes_per_second"] = per_second(static_cast<double>(s.bytes), s.wall_seconds);
  j["busy_bytes_per_second"] = per_second(static_cast<double>(s.bytes), s.busy_seconds);
  j["tokens_per_second"] = per_second(static_cast<double>(s.tokens), s.wall_seconds);  // I/O-bound, no compute
  return j;
}

void print_raw(const IoBenchResult& r, const std::string& file, bool json) {
  const nlohmann::json j = raw_json(r);
  if (json) {
    fmt::print("{}\n", j.dump());
    return;
  }
  fmt::print("iobench {} ({:.1f} MB): {}, {}, {} KiB random reads, {}\n", file, r.file_bytes / 1e6,
             r.mode == "direct" ? "O_DIRECT" : "buffered (" + r.mode_reason + ")", r.backend, r.read_bytes >> 10,
             r.burst > 0 ? fmt::format("groups of {} waited for", r.burst) : fmt::format("queue depth {}", r.queue_depth));
  fmt::print("  {:.1f} MB/s  {:.0f} IOPS  latency p50 {:.3f} ms  p99 {:.3f} ms  max {:.3f} ms\n",
             j["bytes_per_second"].get<double>() / 1e6, j["iops"].get<double>(), j["latency_p50_s"].get<double>() * 1e3,
             j["latency_p99_s"].get<double>() * 1e3, j["latency_max_s"].get<double>() * 1e3);
  fmt::print("  {} reads, {:.1f} MB in {:.2f} s; the kernel counted {:.1f} MB read\n", r.reads, r.bytes / 1e6,
             r.seconds, r.kernel_read_bytes / 1e6);
}

int run_iobench_cmd(const Flags& fl) {
  if (fl.file.empty() && fl.model.empty())
    throw Error(ErrorKind::invalid_input, "--file", "give --file F (a drive's ceiling) and/or --model DIR");
  if (fl.read_kb <= 0 || fl.read_kb % 4 != 0)
    throw Error(ErrorKind::invalid_input, "--read-kb", fmt::format("{} is not a positive multiple of 4", fl.read_kb));
  IoBenchOptions o;
  o.read_bytes = static_cast<uint64_t>(fl.read_kb) << 10;
  o.queue_depth = fl.qd;
  o.burst = fl.burst;
  o.seconds = fl.seconds;
  o.use_uring = fl.backend == "uring";
  if (!fl.file.empty()) {
    o.file = fl.file;
    print_raw(run_iobench(o), fl.file, fl.json);
  }
  if (fl.model.empty()) return 0;
  ExpertStreamBenchOptions so;
  so.model_dir = fl.model;
  const ModelOptions engine = fl.engine.options();
  so.expert_cache_bytes = static_cast<uint64_t>(engine.expert_cache_mb) << 20;
  so.expert_cache_policy = engine.expert_cache_policy;
  so.queue_depth = fl.qd;
  so.seconds = fl.seconds;
  so.use_uring = o.use_uring;
  const ExpertStreamBenchResult s = run_expert_stream_bench(so);
  o.file = largest_safetensors_file(fl.model);
  o.read_bytes = s.read_chunk_bytes;
  o.burst = 0;  // the ceiling
  const IoBenchResult ceiling = run_iobench(o);
  if (fl.json) {
    fmt::print("{}\n", nlohmann::json{{"expert_stream", stream_json(s)}, {"ceiling", raw_json(ceiling)}}.dump());
    return 0;
  }
  const nlohmann::json sj = stream_json(s);
  const double ceiling_bps = per_second(static_cast<double>(ceiling.bytes), ceiling.seconds);
  print_raw(ceiling, o.file.string(), false);
  const double hit = s.hits + s.misses ? static_cast<double>(s.hits) / (s.hits + s.misses) : 0.0;
  fmt::print("expert streaming {} ({} {}, cache {:.1f} MB = {:.0f}% of {:.1f} MB of experts, policy {}, random "
             "routing, no compute)\n",
             fl.model, s.mode == "direct" ? "O_DIRECT" : s.mode, s.backend, s.cache_bytes / 1e6,
             100.0 * s.cache_bytes / s.experts_bytes, s.experts_bytes / 1e6, s.policy);
  fmt::print("  {:.1f} MB/s over the run, {:.1f} MB/s while reading = {:.0f}% of the ceiling above; {:.1f} tok/s "
             "I/O-bound; hit rate {:.3f}\n",
             sj["bytes_per_second"].get<double>() / 1e6, sj["busy_bytes_per_second"].get<double>() / 1e6,
             100.0 * sj["bytes_per_second"].get<double>() / ceiling_bps, sj["tokens_per_second"].get<double>(), hit);
  fmt::print("  {} tokens, {} reads of {:.0f} KiB on average, {:.1f} MB; the kernel counted {:.1f} MB read\n", s.tokens,
             s.reads, s.reads ? s.bytes / 1024.0 / s.reads : 0.0, s.bytes / 1e6, s.kernel_read_bytes / 1e6);
  return 0;
}

}  // namespace

void register_iobench(CLI::App& app) {
  auto fl = std::make_shared<Flags>();
  auto* sub = app.add_subcommand("iobench", "O_DIRECT random-read bandwidth of a drive, and of expert streaming");
  sub->add_option("--file", fl->file, "file to read (a model shard is a good choice)");
  sub->add_option("--model", fl->model, "MoE model directory: measure the expert streamer's cold read path too");
  sub->add_option("--read-kb", fl->read_kb, "bytes per read for --file, KiB (multiple of 4)");
  sub->add_option("--qd", fl->qd, "reads in flight")->check(CLI::Range(1, 1024));
  sub->add_option("--burst", fl->burst, "for --file: reads in groups of N, each waited for (N <= --qd; 0 = always --qd in flight)")
      ->check(CLI::Range(0, 1024));
  sub->add_option("--seconds", fl->seconds, "how long to read")->check(CLI::PositiveNumber);
  sub->add_option("--backend", fl->backend, "uring | threads")->check(CLI::IsMember({"uring", "threads"}));
  fl->engine.add_options_to(*sub, {"expert_cache_mb", "expert_cache_policy"});  // with --model
  sub->add_flag("--json", fl->json, "JSON output");
  sub->callback(guarded([fl] { return run_iobench_cmd(*fl); }));
}

}  // namespace lmlab::cli
