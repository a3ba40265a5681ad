// Lloyd-Max scalar quantizers for the coordinates of a randomly rotated unit vector.
// TurboQuant (arXiv 2504.19874, Eq. 4) quantizes each rotated coordinate with the centroids that
// minimise the continuous 1-D k-means cost  C(f, b) = min sum_k int_{cell k} |x - c_k|^2 f(x) dx  for the
// coordinate density f, which for dimension d is close to N(0, 1/d) (Lemma 1). We solve it with Lloyd's
// algorithm on the Gaussian density itself, in closed form per iteration:
//   boundaries  t_k = (c_k + c_{k+1}) / 2                         (nearest-neighbour cells)
//   centroids   c_k = E[X | t_{k-1} < X < t_k] = (phi(t_{k-1}) - phi(t_k)) / (Phi(t_k) - Phi(t_{k-1}))
// for X ~ N(0, 1), then scale by 1/sqrt(d). The fixed point satisfies both Lloyd conditions; its distortion
// D_b = E[(X - Q(X))^2] (0.1175, 0.03454, 0.009497, 0.002499 for b = 2, 3, 4, 5 at unit variance) is the "C(f, b)" of
// Theorem 1, and divides by d for N(0, 1/d).
#pragma once

#include <cstdint>
#include <vector>

namespace lmlab::turboquant {

// Lloyd-Max quantizer of N(0, 1), in double precision.
struct GaussianLloydMax {
  std::vector<double> centroids;   // 2^bits, ascending, symmetric about 0
  std::vector<double> boundaries;  // 2^bits - 1 cell boundaries (midpoints of neighbouring centroids)
  double distortion = 0.0;         // E[(X - Q(X))^2], X ~ N(0, 1)
  int iterations = 0;
};
GaussianLloydMax solve_gaussian_lloyd_max(int bits);

// The codebook for N(0, 1/dim) (float, for the codec and the kernels): the scaled centroids rounded to f16 values
// (exact f16 tensor-core operands on the GPU), the boundaries their midpoints.
struct Codebook {
  int bits = 0;
  int64_t dim = 0;
  std::vector<float> centroids;   // 2^bits, ascending
  std::vector<float> boundaries;  // 2^bits - 1
  double distortion = 0.0;        // E[(X - Q(X))^2] for X ~ N(0, 1/dim): GaussianLloydMax::distortion / dim (the
                                  // unrounded centroids'; the f16 rounding adds under 1e-6 of it)

  // Index of the nearest centroid: the number of boundaries below x (binary search; 31 boundaries at 5 bits).
  int quantize(float x) const {
    int lo = 0, hi = static_cast<int>(boundaries.size());  // answer in [lo, hi]
    while (lo < hi) {
      const int mid = (lo + hi) / 2;
      if (x > boundaries[mid]) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
};

// Cached per (bits, dim); bits in 1..5, dim > 0. Thread-safe; the reference stays valid forever.
const Codebook& lloyd_max_codebook(int bits, int64_t dim);

}  // namespace lmlab::turboquant
