// Randomized Walsh-Hadamard rotation (see wht.h).
#include "kv/turboquant/wht.h"

#include <cmath>
#include <string>

#include "kv/turboquant/rng.h"
#include "lmlab/error.h"

namespace lmlab::turboquant {

void fwht(float* x, int64_t n) {
  // Butterfly stages h = 1, 2, 4, ...: (a, b) -> (a + b, a - b). Each stage is orthogonal up to sqrt(2).
  for (int64_t h = 1; h < n; h *= 2)
    for (int64_t i = 0; i < n; i += 2 * h)
      for (int64_t j = i; j < i + h; ++j) {
        const float a = x[j], b = x[j + h];
        x[j] = a + b;
        x[j + h] = a - b;
      }
}

RandomizedHadamard::RandomizedHadamard(int64_t dim, uint64_t seed)
    : dim_(dim), inv_sqrt_(static_cast<float>(1.0 / std::sqrt(static_cast<double>(dim)))) {
  if (dim <= 0 || (dim & (dim - 1)) != 0)
    throw Error(ErrorKind::invalid_input, "RandomizedHadamard",
                "dimension " + std::to_string(dim) + " is not a power of two");
  SplitMix64 rng(seed);
  d1_.resize(static_cast<size_t>(dim));
  d2_.resize(static_cast<size_t>(dim));
  for (auto& s : d1_) s = (rng.next() >> 63) ? -1.0f : 1.0f;
  for (auto& s : d2_) s = (rng.next() >> 63) ? -1.0f : 1.0f;
}

void RandomizedHadamard::forward(const float* x, float* y) const {
  for (int64_t i = 0; i < dim_; ++i) y[i] = x[i] * d1_[i];
  fwht(y, dim_);
  for (int64_t i = 0; i < dim_; ++i) y[i] *= d2_[i] * inv_sqrt_;
}

void RandomizedHadamard::inverse(const float* y, float* x) const {
  // (D2 H D1 / sqrt(n))^T = D1 H D2 / sqrt(n): H is symmetric and the D are their own inverses.
  for (int64_t i = 0; i < dim_; ++i) x[i] = y[i] * d2_[i];
  fwht(x, dim_);
  for (int64_t i = 0; i < dim_; ++i) x[i] *= d1_[i] * inv_sqrt_;
}

int64_t turbo_group_dim(int64_t head_dim) {
  if (head_dim <= 0) return 0;
  int64_t g = 128;
  while (g >= 16 && head_dim % g != 0) g /= 2;
  return g >= 16 ? g : 0;
}

HeadRotation::HeadRotation(int64_t head_dim, uint64_t seed) : group_dim_(turbo_group_dim(head_dim)) {
  if (group_dim_ == 0)
    throw Error(
        ErrorKind::unsupported, "TurboQuant",
        "head_dim " + std::to_string(head_dim) + " is not a multiple of 16 (rotation groups are powers of two >= 16)");
  for (int64_t g = 0; g < head_dim / group_dim_; ++g) groups_.emplace_back(group_dim_, derive_seed(seed, 0x100 + g));
}

void HeadRotation::forward(const float* x, float* y) const {
  for (size_t g = 0; g < groups_.size(); ++g) groups_[g].forward(x + g * group_dim_, y + g * group_dim_);
}

void HeadRotation::inverse(const float* y, float* x) const {
  for (size_t g = 0; g < groups_.size(); ++g) groups_[g].inverse(y + g * group_dim_, x + g * group_dim_);
}

}  // namespace lmlab::turboquant
