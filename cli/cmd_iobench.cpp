// lmlab iobench --file F [--read-kb 256] [--qd 8] [--seconds 5] [--backend uring|threads] [--json]:
// the drive's O_DIRECT random-read bandwidth at one read size and queue depth (the streaming ceiling).
#include <fmt/format.h>

#include "common.h"
#include "lmlab/iobench.h"

namespace lmlab::cli {

namespace {

struct Flags {
  std::string file;
  int64_t read_kb = 256;
  int qd = 8;
  double seconds = 5.0;
  std::string backend = "uring";
  bool json = false;
};

int run_iobench_cmd(const Flags& fl) {
  if (fl.read_kb <= 0 || fl.read_kb % 4 != 0)
    throw Error(ErrorKind::invalid_input, "--read-kb", fmt::format("{} is not a positive multiple of 4", fl.read_kb));
  IoBenchOptions o;
  o.file = fl.file;
  o.read_bytes = static_cast<uint64_t>(fl.read_kb) << 10;
  o.queue_depth = fl.qd;
  o.seconds = fl.seconds;
  o.use_uring = fl.backend == "uring";
  const IoBenchResult r = run_iobench(o);
  if (fl.json) {
    fmt::print("{}\n", r.to_json());
    return 0;
  }
  fmt::print("iobench {} ({:.1f} MB): {}{}, {} KiB random reads, queue depth {}\n", fl.file, r.file_bytes / 1e6,
             r.mode == "direct" ? "O_DIRECT" : "buffered (" + r.mode_reason + ")", ", " + r.backend, fl.read_kb,
             r.queue_depth);
  fmt::print("  {:.1f} MB/s  {:.0f} IOPS  latency p50 {:.3f} ms  p99 {:.3f} ms  max {:.3f} ms\n",
             r.bytes_per_second / 1e6, r.iops, r.latency_p50_s * 1e3, r.latency_p99_s * 1e3, r.latency_max_s * 1e3);
  fmt::print("  {} reads, {:.1f} MB in {:.2f} s; the kernel counted {:.1f} MB read\n", r.reads, r.bytes / 1e6,
             r.seconds, r.kernel_read_bytes / 1e6);
  return 0;
}

}  // namespace

void register_iobench(CLI::App& app) {
  auto fl = std::make_shared<Flags>();
  auto* sub = app.add_subcommand("iobench", "O_DIRECT random-read bandwidth of a file's drive");
  sub->add_option("--file", fl->file, "file to read (a model shard is a good choice)")->required();
  sub->add_option("--read-kb", fl->read_kb, "bytes per read, KiB (multiple of 4)");
  sub->add_option("--qd", fl->qd, "reads in flight")->check(CLI::Range(1, 1024));
  sub->add_option("--seconds", fl->seconds, "how long to read")->check(CLI::PositiveNumber);
  sub->add_option("--backend", fl->backend, "uring | threads")->check(CLI::IsMember({"uring", "threads"}));
  sub->add_flag("--json", fl->json, "one JSON object");
  sub->callback(guarded([fl] { return run_iobench_cmd(*fl); }));
}

}  // namespace lmlab::cli
