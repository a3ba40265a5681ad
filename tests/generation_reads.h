// The SSD-byte check's measurement, shared by the CPU and GPU streaming tests: a model loaded with the given
// options generates a fixed number of tokens from a prompt; the engine's counters afterwards and the bytes the
// kernel counted for this process meanwhile (/proc/self/io read_bytes, nullopt without task I/O accounting).
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>

#include "lmlab/generate.h"
#include "lmlab/model.h"
#include "util/memory_stats.h"

namespace lmlab::test {

struct GenerationReads {
  ModelCounters counters;
  std::optional<uint64_t> kernel_bytes;
};

inline GenerationReads generate_and_count_reads(const std::filesystem::path& dir, const ModelOptions& options,
                                                std::span<const int32_t> prompt, int64_t tokens) {
  GenerationReads r;
  const std::optional<uint64_t> before = process_read_bytes();
  {
    auto model = Model::load(dir, options);
    auto s = model->new_session();
    SamplingParams sp;
    sp.max_tokens = tokens;
    sp.stop_at_eos = false;
    generate(*s, prompt, sp);
    r.counters = model->counters();
  }  // unloaded: nothing read after this point is counted
  const std::optional<uint64_t> after = process_read_bytes();
  if (before && after) r.kernel_bytes = *after - *before;
  return r;
}

// The engine's SSD byte counter against the kernel's count, within 1% (skips when the kernel counted no reads:
// O_DIRECT refused on `dir`). The caller's test ends with it.
inline void expect_ssd_bytes_match_the_kernel(const GenerationReads& r, const std::filesystem::path& dir) {
  ASSERT_TRUE(r.kernel_bytes.has_value()) << "/proc/self/io went away during the test";
  const uint64_t kernel = *r.kernel_bytes, engine = r.counters.stream.ssd_bytes_read_total;
  ASSERT_GT(engine, 0u) << "streamed, but the byte counter stayed at 0";
  if (kernel == 0) GTEST_SKIP() << "the kernel counted no reads: O_DIRECT refused on " << dir;
  const double rel = std::fabs(static_cast<double>(kernel) - static_cast<double>(engine)) / static_cast<double>(engine);
  EXPECT_LE(rel, 0.01) << "engine " << engine << " bytes, kernel " << kernel;
}

}  // namespace lmlab::test
