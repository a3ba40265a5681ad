// Helpers of the KV tests (turboquant_test, kv_attention_test): seeded Gaussian data, compressed-mode options
// and a walk over every instruction-set path this machine has.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "kernels/cpu/isa.h"
#include "kv/turboquant/rng.h"
#include "kv/turboquant/tq_layer_spec.h"

namespace lmlab::test {

inline std::vector<float> gaussian(turboquant::SplitMix64& rng, int64_t n, double sigma = 1.0) {
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = static_cast<float>(sigma * rng.gaussian());
  return v;
}

inline TurboKvOptions turbo_options(TurboKvOptions::Mode mode, int k_bits, bool k_qjl, int v_bits, int64_t hot_window) {
  TurboKvOptions o;
  o.mode = mode;
  o.k_bits = k_bits;
  o.k_qjl = k_qjl;
  o.v_bits = v_bits;
  o.hot_window = hot_window;
  return o;
}

// Runs fn once per instruction-set path this machine has, then restores the default.
template <typename Fn>
void for_each_isa(Fn fn) {
  for (const char* isa : {"scalar", "avx2", "avx512"}) {
    if (!kernels::cpu::force_isa(isa)) continue;
    SCOPED_TRACE(std::string("isa ") + isa);
    fn();
  }
  kernels::cpu::force_isa(nullptr);
}

}  // namespace lmlab::test
