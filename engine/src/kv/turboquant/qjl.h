// QJL: the 1-bit Quantized Johnson-Lindenstrauss transform of TurboQuant's second stage (arXiv 2504.19874,
// Definition 1):  Q_qjl(r) = sign(S . r),  Q_qjl^-1(z) = sqrt(pi/2) / d . S^T . z,  S in R^{d x d} with i.i.d.
// N(0, 1) entries. Lemma 4: for any fixed y, E_S[<y, ||r|| Q_qjl^-1(Q_qjl(r / ||r||))>] = <y, r> (unbiased),
// with variance <= pi / (2d) ||y||^2 ||r||^2. The proof needs Gaussian rows of S (E[<s, y> sign(<s, r>)] =
// sqrt(2/pi) <y, r> / ||r|| holds for s ~ N(0, I), not for +-1 rows), so S is a dense Gaussian matrix here, not a
// second Hadamard rotation: d x d floats (64 KiB at d = 128), applied once per stored key and once per query.
// The estimator used in attention: <q, r> ~= ||r|| . sqrt(pi/2) / d . <S q, sign(S r)>.
#pragma once

#include <cstdint>
#include <vector>

namespace lmlab::turboquant {

class QjlProjection {
 public:
  QjlProjection(int64_t dim, uint64_t seed);
  int64_t dim() const { return dim_; }
  const float* matrix() const { return s_.data(); }  // [dim, dim] row-major, S[i][j]

  // y[n][dim] = x[n][dim] . S^T (each row y = S x). Multi-threaded through the matmul kernel.
  void project(const float* x, int64_t n, float* y) const;
  // x[dim] += alpha * S^T z for z[dim] in {-1, +1} (the paper's Q_qjl^-1, scaled by the caller).
  void add_transposed(const float* z, float alpha, float* x) const;

 private:
  int64_t dim_;
  std::vector<float> s_;
};

}  // namespace lmlab::turboquant
