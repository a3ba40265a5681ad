// Deterministic random numbers for TurboQuant's seeded transforms (rotation signs, the QJL matrix) and tests.
// SplitMix64: a 64-bit counter mixed by a bijective finaliser; every seed gives a full-period, well-mixed
// stream, so the same seed always rebuilds the same rotation and projection (caches are reproducible).
#pragma once

#include <cmath>
#include <cstdint>

namespace lmlab::turboquant {

class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}

  uint64_t next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }

  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

  // Standard normal by Box-Muller; the second value of each pair is kept for the next call.
  double gaussian() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    double u1;
    do u1 = uniform();
    while (u1 <= 0.0);
    const double u2 = uniform();
    const double r = std::sqrt(-2.0 * std::log(u1)), a = 6.283185307179586 * u2;
    spare_ = r * std::sin(a);
    has_spare_ = true;
    return r * std::cos(a);
  }

 private:
  uint64_t state_;
  double spare_ = 0.0;
  bool has_spare_ = false;
};

// Mixes a seed with a stream label (group index, "rotation" vs "qjl") into an independent seed.
inline uint64_t derive_seed(uint64_t seed, uint64_t label) {
  SplitMix64 g(seed ^ (label * 0xd1342543de82ef95ull + 0x2545f4914f6cdd1dull));
  return g.next();
}

}  // namespace lmlab::turboquant
