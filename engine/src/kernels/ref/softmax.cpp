// Reference softmax (max-subtracted, double accumulation).
#include <cmath>

#include "kernels/kernels.h"

namespace lmlab::kernels::ref {

void softmax(float* x, int64_t n) {
  if (n <= 0) return;
  float m = x[0];
  for (int64_t i = 1; i < n; ++i) m = x[i] > m ? x[i] : m;
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(static_cast<double>(x[i]) - m);
  for (int64_t i = 0; i < n; ++i) x[i] = static_cast<float>(std::exp(static_cast<double>(x[i]) - m) / sum);
}

}  // namespace lmlab::kernels::ref
