// Randomized fast Walsh-Hadamard rotation: the random rotation Pi of TurboQuant (arXiv 2504.19874, Algorithm 1,
// line "y <- Pi . x"), in its structured fast form.
//   fwht(x, n)          in-place unnormalised Walsh-Hadamard transform H_n (n a power of two): H_n^2 = n I.
//   RandomizedHadamard  y = D2 . H . D1 . x / sqrt(n) with D1, D2 diagonal +-1 sign matrices drawn from a seed.
//                       Orthogonal: inverse(forward(x)) = x and ||forward(x)|| = ||x||.
//   HeadRotation        a head vector of head_dim = n_groups * group_dim split into groups of group_dim <= 128
//                       dims, each rotated by its own RandomizedHadamard (head_dim 64 -> one group of 64,
//                       128 -> one group of 128, 256 -> two groups of 128).
// After the rotation, every coordinate of a unit vector is close to N(0, 1/group_dim) whatever the input
// (the paper's Lemma 1), which is what the Lloyd-Max codebooks are designed for.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "kv/codec/kv_codec.h"

namespace lmlab::turboquant {

void fwht(float* x, int64_t n);  // in place, unnormalised; n a power of two

class RandomizedHadamard {
 public:
  RandomizedHadamard(int64_t dim, uint64_t seed);
  int64_t dim() const { return dim_; }
  void forward(const float* x, float* y) const;  // x, y: [dim]; may alias
  void inverse(const float* y, float* x) const;  // x = D1 . H . D2 . y / sqrt(dim); may alias
  // The transform's parts, for device kernels that apply the same float operations (cuda/kernels/turboquant.cu).
  const std::vector<float>& d1() const { return d1_; }  // [dim] +-1
  const std::vector<float>& d2() const { return d2_; }  // [dim] +-1
  float inv_sqrt() const { return inv_sqrt_; }

 private:
  int64_t dim_;
  float inv_sqrt_;
  std::vector<float> d1_, d2_;  // +-1
};

// The largest power of two <= 128 dividing head_dim, or 0 when that is < 16 (unsupported by the codec).
int64_t turbo_group_dim(int64_t head_dim);

class HeadRotation final : public KvRotation {
 public:
  HeadRotation(int64_t head_dim, uint64_t seed);
  int64_t head_dim() const { return group_dim_ * static_cast<int64_t>(groups_.size()); }
  int64_t group_dim() const { return group_dim_; }
  int64_t n_groups() const { return static_cast<int64_t>(groups_.size()); }
  void forward(const float* x, float* y) const override;  // [head_dim]; may alias
  void inverse(const float* y, float* x) const override;
  const RandomizedHadamard& group(int64_t g) const { return groups_[static_cast<std::size_t>(g)]; }

 private:
  int64_t group_dim_;
  std::vector<RandomizedHadamard> groups_;
};

}  // namespace lmlab::turboquant
