// The drive probe (run_iobench): every read counted, bytes equal to reads x read size, the kernel's own count at
// least that much when reads are direct, groups of `burst` reads waited for one after another, and bad options
// refused by name. Reads a fixture model copied to a disk-backed directory (O_DIRECT needs one).
#include <gtest/gtest.h>

#include "lmlab/error.h"
#include "lmlab/iobench.h"
#include "model_copy.h"

namespace lmlab {
namespace {

IoBenchOptions probe_of(const std::filesystem::path& file, int queue_depth, int burst) {
  IoBenchOptions o;
  o.file = file;
  o.read_bytes = 64 << 10;
  o.queue_depth = queue_depth;
  o.burst = burst;
  o.seconds = 0.1;
  return o;
}

TEST(IoBench, CountsEveryReadInBothPatterns) {
  const test::DiskModelCopy copy("coder-dense");
  const std::filesystem::path file = largest_safetensors_file(copy.dir());
  EXPECT_EQ(file.filename(), "model.safetensors");
  for (int burst : {0, 3}) {
    SCOPED_TRACE(burst);
    const IoBenchResult r = run_iobench(probe_of(file, 4, burst));
    EXPECT_GT(r.reads, 0u);
    EXPECT_EQ(r.bytes, r.reads * (64u << 10));
    EXPECT_EQ(r.latencies_s.size(), r.reads);
    EXPECT_GT(r.seconds, 0.05);
    if (burst > 0) EXPECT_EQ(r.reads % burst, 0u) << "whole groups only";
    if (r.mode == "direct") EXPECT_GE(r.kernel_read_bytes, r.bytes);
  }
}

TEST(IoBench, RefusesBadOptionsNamingThem) {
  const test::DiskModelCopy copy("coder-dense");
  const std::filesystem::path file = copy.dir() / "model.safetensors";
  auto error_of = [](const IoBenchOptions& o) -> std::string {
    try {
      run_iobench(o);
    } catch (const Error& e) {
      return e.what();
    }
    return "ran";
  };
  EXPECT_NE(error_of(probe_of(file, 2, 3)).find("burst"), std::string::npos);
  EXPECT_NE(error_of(probe_of(file, 2, -1)).find("burst"), std::string::npos);
  IoBenchOptions odd = probe_of(file, 2, 0);
  odd.read_bytes = 1000;
  EXPECT_NE(error_of(odd).find("multiple of 4 KiB"), std::string::npos);
  IoBenchOptions huge = probe_of(file, 2, 0);
  huge.read_bytes = uint64_t{1} << 40;
  EXPECT_NE(error_of(huge).find("smaller than one read"), std::string::npos);
  EXPECT_THROW(largest_safetensors_file(copy.dir() / "missing"), std::exception);
  EXPECT_NE(error_of(probe_of(copy.dir() / "absent.safetensors", 2, 0)).find("cannot stat"), std::string::npos);
}

}  // namespace
}  // namespace lmlab
