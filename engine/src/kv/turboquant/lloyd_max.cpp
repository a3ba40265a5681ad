// Lloyd's algorithm on the Gaussian density (see lloyd_max.h).
#include "kv/turboquant/lloyd_max.h"

#include <cmath>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "lmlab/error.h"
#include "util/half.h"

namespace lmlab::turboquant {

namespace {

constexpr double kInvSqrt2Pi = 0.3989422804014327;

double pdf(double x) {
  return std::isinf(x) ? 0.0 : kInvSqrt2Pi * std::exp(-0.5 * x * x);
}
double cdf(double x) {
  return 0.5 * std::erfc(-x / std::sqrt(2.0));
}

// Mass, first and second moments of N(0, 1) on (a, b): P, E[X 1], E[X^2 1].
struct CellMoments {
  double p, m1, m2;
};
CellMoments moments(double a, double b) {
  const double p = cdf(b) - cdf(a);
  const double m1 = pdf(a) - pdf(b);
  // int_a^b x^2 phi = [Phi - x phi]_a^b; x phi(x) -> 0 at +-inf.
  const double xa = std::isinf(a) ? 0.0 : a * pdf(a), xb = std::isinf(b) ? 0.0 : b * pdf(b);
  return {p, m1, p + xa - xb};
}

}  // namespace

GaussianLloydMax solve_gaussian_lloyd_max(int bits) {
  if (bits < 1 || bits > 8)
    throw Error(ErrorKind::invalid_input, "Lloyd-Max", "bits must be in 1..8, got " + std::to_string(bits));
  const int n = 1 << bits;
  GaussianLloydMax q;
  q.centroids.resize(n);
  q.boundaries.resize(n - 1);
  // Start from evenly spaced points over +-3 sigma; Lloyd's iteration only lowers the distortion.
  for (int k = 0; k < n; ++k) q.centroids[k] = -3.0 + 6.0 * (k + 0.5) / n;
  for (q.iterations = 1; q.iterations <= 100000; ++q.iterations) {
    for (int k = 0; k + 1 < n; ++k) q.boundaries[k] = 0.5 * (q.centroids[k] + q.centroids[k + 1]);
    double change = 0.0;
    for (int k = 0; k < n; ++k) {
      const double a = k == 0 ? -INFINITY : q.boundaries[k - 1], b = k == n - 1 ? INFINITY : q.boundaries[k];
      const CellMoments c = moments(a, b);
      const double next = c.m1 / c.p;
      change = std::max(change, std::fabs(next - q.centroids[k]));
      q.centroids[k] = next;
    }
    if (change < 1e-14) break;
  }
  for (int k = 0; k + 1 < n; ++k) q.boundaries[k] = 0.5 * (q.centroids[k] + q.centroids[k + 1]);
  q.distortion = 0.0;
  for (int k = 0; k < n; ++k) {
    const double a = k == 0 ? -INFINITY : q.boundaries[k - 1], b = k == n - 1 ? INFINITY : q.boundaries[k];
    const CellMoments c = moments(a, b);
    const double ck = q.centroids[k];
    q.distortion += c.m2 - 2.0 * ck * c.m1 + ck * ck * c.p;  // int (x - c_k)^2 phi over the cell
  }
  return q;
}

const Codebook& lloyd_max_codebook(int bits, int64_t dim) {
  if (bits < 1 || bits > 5)
    throw Error(ErrorKind::invalid_input, "Lloyd-Max codebook", "bits must be 1..5, got " + std::to_string(bits));
  if (dim <= 0) throw Error(ErrorKind::invalid_input, "Lloyd-Max codebook", "dimension must be positive");
  static std::mutex mu;
  static std::map<std::pair<int, int64_t>, std::unique_ptr<Codebook>> cache;
  static std::map<int, GaussianLloydMax> unit;
  std::lock_guard<std::mutex> lock(mu);
  auto& slot = cache[{bits, dim}];
  if (!slot) {
    auto it = unit.find(bits);
    if (it == unit.end()) it = unit.emplace(bits, solve_gaussian_lloyd_max(bits)).first;
    const GaussianLloydMax& u = it->second;
    const double sigma = 1.0 / std::sqrt(static_cast<double>(dim));
    auto cb = std::make_unique<Codebook>();
    cb->bits = bits;
    cb->dim = dim;
    // Centroids rounded to f16 values, so that the GPU's tensor-core decode takes the codes as exact f16 operands
    // (two MMAs per product, the f32 operand's hi and lo parts, instead of three); each moves by at most 2^-11 of
    // itself, and the boundaries are the rounded centroids' midpoints, so quantize() stays the nearest-centroid rule.
    for (double c : u.centroids) cb->centroids.push_back(f16_to_f32(f32_to_f16(static_cast<float>(c * sigma))));
    for (size_t k = 0; k + 1 < cb->centroids.size(); ++k) {
      const double mid = 0.5 * (static_cast<double>(cb->centroids[k]) + cb->centroids[k + 1]);
      cb->boundaries.push_back(static_cast<float>(mid));
    }
    cb->distortion = u.distortion / static_cast<double>(dim);
    slot = std::move(cb);
  }
  return *slot;
}

}  // namespace lmlab::turboquant
