// Shared by the kernel tests: a fixture that runs a parameterised test once per ISA path ("scalar", "avx2",
// "avx512"; skipped, visibly, where the CPU lacks it) and seeded normal test data.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <vector>

#include "kernels/cpu/isa.h"
#include "kernels/kernels.h"

namespace lmlab::test {

class IsaTest : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    if (!kernels::cpu::force_isa(GetParam()))
      GTEST_SKIP() << "this CPU lacks " << GetParam() << " (detected best: "
                   << kernels::cpu::isa_name(kernels::cpu::detected_isa()) << ")";
    ASSERT_STREQ(kernels::cpu::isa_name(), GetParam());
  }
  void TearDown() override { kernels::cpu::force_isa(nullptr); }
};

inline std::vector<float> random_vector(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

}  // namespace lmlab::test
