// Gaussian QJL projection (see qjl.h).
#include "kv/turboquant/qjl.h"

#include "kernels/kernels.h"
#include "kv/turboquant/rng.h"

namespace lmlab::turboquant {

QjlProjection::QjlProjection(int64_t dim, uint64_t seed) : dim_(dim), s_(static_cast<size_t>(dim * dim)) {
  SplitMix64 rng(seed);
  for (auto& v : s_) v = static_cast<float>(rng.gaussian());
}

void QjlProjection::project(const float* x, int64_t n, float* y) const {
  if (n <= 0) return;
  kernels::matmul({kernels::WeightType::f32, s_.data(), dim_, dim_, x, y, n});
}

void QjlProjection::add_transposed(const float* z, float alpha, float* x) const {
  for (int64_t i = 0; i < dim_; ++i) {
    const float a = alpha * z[i];
    const float* row = s_.data() + i * dim_;
    for (int64_t j = 0; j < dim_; ++j) x[j] += a * row[j];
  }
}

}  // namespace lmlab::turboquant
