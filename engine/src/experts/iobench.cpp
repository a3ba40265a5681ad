// run_iobench: keeps queue_depth random aligned reads in flight through DirectReader for a fixed time.
#include "lmlab/iobench.h"

#include <fmt/format.h>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>

#include "arch/registry.h"
#include "experts/direct_reader.h"
#include "experts/expert_streamer.h"
#include "lmlab/error.h"
#include "util/memory_stats.h"

namespace lmlab {

IoBenchResult run_iobench(const IoBenchOptions& o) {
  if (o.read_bytes == 0 || o.read_bytes % DirectReader::kAlignment != 0)
    throw Error(ErrorKind::invalid_input, "--read-kb", fmt::format("{} bytes is not a multiple of 4 KiB", o.read_bytes));
  if (o.queue_depth < 1) throw Error(ErrorKind::invalid_input, "--qd", "the queue depth must be at least 1");
  if (o.burst < 0 || o.burst > o.queue_depth)
    throw Error(ErrorKind::invalid_input, "burst", fmt::format("{} is not in [0, the queue depth {}]", o.burst, o.queue_depth));
  std::error_code ec;
  const uint64_t size = std::filesystem::file_size(o.file, ec);
  if (ec) throw Error(ErrorKind::io, o.file.string(), fmt::format("cannot stat: {}", ec.message()));
  if (size < o.read_bytes)
    throw Error(ErrorKind::invalid_input, o.file.string(),
                fmt::format("the file ({} bytes) is smaller than one read ({} bytes)", size, o.read_bytes));
  const uint64_t slots = (size - o.read_bytes) / DirectReader::kAlignment + 1;  // aligned start offsets

  const uint64_t kernel0 = process_read_bytes().value_or(0);
  DirectReader reader({o.file}, {o.queue_depth, o.use_uring, false});
  const IoStats io0 = reader.stats();  // the O_DIRECT probe is not part of the run
  std::vector<AlignedBuffer> bufs;
  for (int i = 0; i < o.queue_depth; ++i) bufs.emplace_back(o.read_bytes);

  std::mutex mu;
  std::condition_variable cv;
  std::mt19937_64 rng(o.seed);
  std::vector<double> latencies;
  int in_flight = 0, first_err = 0;
  const double t0 = monotonic_seconds(), deadline = t0 + o.seconds;
  double t_end = t0;
  std::function<void(int)> launch = [&](int slot) {  // mu held
    const uint64_t off = (rng() % slots) * DirectReader::kAlignment;
    const double start = monotonic_seconds();
    ++in_flight;
    reader.submit({0, off, o.read_bytes, o.read_bytes, bufs[slot].data()}, [&, slot, start](int err) {
      const double now = monotonic_seconds();
      std::lock_guard lk(mu);
      --in_flight;
      latencies.push_back(now - start);
      t_end = std::max(t_end, now);
      if (err && !first_err) first_err = err;
      if (!first_err && now < deadline && o.burst == 0) launch(slot);
      if (in_flight == 0) cv.notify_all();
    });
  };
  {
    std::unique_lock lk(mu);
    if (o.burst == 0) {
      for (int i = 0; i < o.queue_depth; ++i) launch(i);
      cv.wait(lk, [&] { return in_flight == 0; });
    } else {
      do {
        for (int i = 0; i < o.burst; ++i) launch(i);
        cv.wait(lk, [&] { return in_flight == 0; });
      } while (!first_err && monotonic_seconds() < deadline);
    }
  }
  if (first_err)
    throw Error(ErrorKind::io, o.file.string(), fmt::format("read failed: {}", std::strerror(first_err)));
  const IoStats io = reader.stats();
  IoBenchResult r;
  r.mode = std::string(read_mode_name(reader.mode()));
  r.mode_reason = reader.mode_reason();
  r.backend = std::string(reader.backend_name());
  r.file_bytes = size;
  r.read_bytes = o.read_bytes;
  r.queue_depth = o.queue_depth;
  r.burst = o.burst;
  r.reads = io.reads - io0.reads;
  r.bytes = io.bytes - io0.bytes;
  r.seconds = t_end - t0;
  r.latencies_s = std::move(latencies);
  r.kernel_read_bytes = process_read_bytes().value_or(0) - kernel0;
  return r;
}

std::filesystem::path largest_safetensors_file(const std::filesystem::path& dir) {
  std::filesystem::path best;
  uintmax_t best_size = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    if (e.path().extension() == ".safetensors" && e.file_size() > best_size) best = e.path(), best_size = e.file_size();
  if (best.empty()) throw Error(ErrorKind::model_format, dir.string(), "no .safetensors files found");
  return best;
}

std::string IoBenchResult::to_json() const {
  return nlohmann::json{{"file_bytes", file_bytes},     {"mode", mode},
                        {"mode_reason", mode_reason},   {"backend", backend}, {"burst", burst},
                        {"read_bytes", read_bytes},     {"queue_depth", queue_depth},
                        {"reads", reads},               {"bytes", bytes},
                        {"seconds", seconds},           {"kernel_read_bytes", kernel_read_bytes}}
      .dump();
}

ExpertStreamBenchResult run_expert_stream_bench(const ExpertStreamBenchOptions& o) {
  const ModelSpec spec = load_model_spec(o.model_dir.string());
  const WeightStore store = WeightStore::open_dir(o.model_dir);
  ExpertStreamerOptions so;
  so.expert_queue_depth = o.queue_depth;
  so.use_uring = o.use_uring;
  so.expert_predict_next = false;
  so.expert_cache_policy = parse_cache_policy(o.expert_cache_policy);
  so.expert_cache_bytes = o.expert_cache_bytes;
  if (spec.n_experts == 0)
    throw Error(ErrorKind::invalid_input, o.model_dir.string(), "the model has no MoE experts to stream");
  const uint64_t kernel0 = process_read_bytes().value_or(0);
  ExpertStreamer s(store, spec, so);
  const ExpertLayout& layout = s.layout();
  const StreamCounters c0 = s.counters();
  std::mt19937 rng(o.seed);
  std::vector<int32_t> all(static_cast<size_t>(spec.n_experts));
  for (int32_t e = 0; e < spec.n_experts; ++e) all[e] = e;
  ExpertStreamBenchResult r;
  const double t0 = monotonic_seconds();
  while (monotonic_seconds() - t0 < o.seconds) {
    for (int32_t l : layout.moe_layers()) {
      std::shuffle(all.begin(), all.end(), rng);
      ExpertBatch b = s.request(l, std::span(all.data(), static_cast<size_t>(spec.top_k)));
      while (ExpertHandle h = b.next()) {
      }
    }
    ++r.tokens;
  }
  r.wall_seconds = monotonic_seconds() - t0;
  const StreamCounters c = s.counters().since(c0);
  r.kernel_read_bytes = process_read_bytes().value_or(0) - kernel0;
  r.mode = c.read_mode;
  r.backend = c.io_backend;
  r.policy = o.expert_cache_policy;
  r.expert_read_bytes = layout.all().front().read_bytes;
  r.cache_bytes = s.options().expert_cache_bytes;
  r.experts_bytes = layout.total_read_bytes();
  r.read_chunk_bytes = s.options().read_chunk_bytes;
  r.bytes = c.ssd_bytes_read_total;
  r.reads = c.ssd_reads_total;
  r.hits = c.expert_cache_hits_total;
  r.misses = c.expert_cache_misses_total;
  r.busy_seconds = c.ssd_read_seconds_total;
  return r;
}

std::string ExpertStreamBenchResult::to_json() const {
  return nlohmann::json{{"mode", mode},
                        {"backend", backend},
                        {"policy", policy},
                        {"expert_read_bytes", expert_read_bytes},
                        {"cache_bytes", cache_bytes},
                        {"experts_bytes", experts_bytes},
                        {"read_chunk_bytes", read_chunk_bytes},
                        {"tokens", tokens},
                        {"bytes", bytes},
                        {"reads", reads},
                        {"hits", hits},
                        {"misses", misses},
                        {"wall_seconds", wall_seconds},
                        {"busy_seconds", busy_seconds},
                        {"kernel_read_bytes", kernel_read_bytes}}
      .dump();
}

}  // namespace lmlab
