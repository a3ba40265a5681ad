// The SSD-byte check's measurement, shared by the CPU and GPU streaming tests: a model loaded with the given
// options generates a fixed number of tokens from a prompt; the engine's counters afterwards and the bytes the
// kernel counted for this process meanwhile (/proc/self/io read_bytes, nullopt without task I/O accounting).
#pragma once

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

// |kernel - engine| / engine.
inline double relative_difference(uint64_t kernel, uint64_t engine) {
  return std::fabs(static_cast<double>(kernel) - static_cast<double>(engine)) / static_cast<double>(engine);
}

}  // namespace lmlab::test
