// RoPE test inputs shared by the kernel tests: positions that jump (t * 977, odd ones + 30000, so angles wrap
// many times) and the standard inverse frequencies 10000^(-2i / rot_dim).
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

namespace lmlab::test {

struct RopeInputs {
  std::vector<int32_t> positions;  // [n_tokens]
  std::vector<float> inv_freq;     // [rot_dim / 2]
};

inline RopeInputs rope_inputs(int64_t n_tokens, int64_t rot_dim) {
  RopeInputs r;
  r.positions.resize(static_cast<size_t>(n_tokens));
  for (int64_t t = 0; t < n_tokens; ++t) r.positions[t] = static_cast<int32_t>(t * 977 + (t % 2 ? 30000 : 0));
  r.inv_freq.resize(static_cast<size_t>(rot_dim / 2));
  for (size_t i = 0; i < r.inv_freq.size(); ++i)
    r.inv_freq[i] = static_cast<float>(std::pow(10000.0, -2.0 * static_cast<double>(i) / static_cast<double>(rot_dim)));
  return r;
}

}  // namespace lmlab::test
