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

#include "experts/direct_reader.h"
#include "lmlab/error.h"

namespace lmlab {

namespace {
uint64_t proc_read_bytes() {
  std::ifstream in("/proc/self/io");
  std::string key;
  uint64_t v = 0;
  while (in >> key >> v)
    if (key == "read_bytes:") return v;
  return 0;
}
}  // namespace

IoBenchResult run_iobench(const IoBenchOptions& o) {
  if (o.read_bytes == 0 || o.read_bytes % DirectReader::kAlignment != 0)
    throw Error(ErrorKind::invalid_input, "--read-kb", fmt::format("{} bytes is not a multiple of 4 KiB", o.read_bytes));
  if (o.queue_depth < 1) throw Error(ErrorKind::invalid_input, "--qd", "the queue depth must be at least 1");
  std::error_code ec;
  const uint64_t size = std::filesystem::file_size(o.file, ec);
  if (ec) throw Error(ErrorKind::io, o.file.string(), fmt::format("cannot stat: {}", ec.message()));
  if (size < o.read_bytes)
    throw Error(ErrorKind::invalid_input, o.file.string(),
                fmt::format("the file ({} bytes) is smaller than one read ({} bytes)", size, o.read_bytes));
  const uint64_t slots = (size - o.read_bytes) / DirectReader::kAlignment + 1;  // aligned start offsets

  const uint64_t kernel0 = proc_read_bytes();
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
      if (!first_err && now < deadline) launch(slot);
      if (in_flight == 0) cv.notify_all();
    });
  };
  {
    std::unique_lock lk(mu);
    for (int i = 0; i < o.queue_depth; ++i) launch(i);
    cv.wait(lk, [&] { return in_flight == 0; });
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
  r.reads = io.reads - io0.reads;
  r.bytes = io.bytes - io0.bytes;
  r.seconds = t_end - t0;
  r.bytes_per_second = r.seconds > 0 ? static_cast<double>(r.bytes) / r.seconds : 0;
  r.iops = r.seconds > 0 ? static_cast<double>(r.reads) / r.seconds : 0;
  std::sort(latencies.begin(), latencies.end());
  auto pct = [&](double q) {
    return latencies.empty() ? 0.0 : latencies[std::min(latencies.size() - 1, static_cast<size_t>(q * latencies.size()))];
  };
  r.latency_p50_s = pct(0.50);
  r.latency_p99_s = pct(0.99);
  r.latency_max_s = latencies.empty() ? 0.0 : latencies.back();
  r.kernel_read_bytes = proc_read_bytes() - kernel0;
  return r;
}

std::string IoBenchResult::to_json() const {
  return nlohmann::json{{"file_bytes", file_bytes},     {"mode", mode},
                        {"mode_reason", mode_reason},   {"backend", backend},
                        {"read_bytes", read_bytes},     {"queue_depth", queue_depth},
                        {"reads", reads},               {"bytes", bytes},
                        {"seconds", seconds},           {"bytes_per_second", bytes_per_second},
                        {"iops", iops},                 {"latency_p50_s", latency_p50_s},
                        {"latency_p99_s", latency_p99_s}, {"latency_max_s", latency_max_s},
                        {"kernel_read_bytes", kernel_read_bytes}}
      .dump();
}

}  // namespace lmlab
