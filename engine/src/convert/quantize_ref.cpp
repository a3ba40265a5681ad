// The original exhaustive fit, unchanged: see quantize_ref.h.
#include "convert/quantize_ref.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "util/half.h"

namespace lmlab {

namespace {

struct Fit {
  uint16_t s, b;  // stored scale and bias
};

class GroupFitter {
 public:
  GroupFitter(const float* w, int n, float n_bins, kernels::ScaleType t) : w_(w), n_(n), n_bins_(n_bins), t_(t) {}

  Fit rounded(float scale, float bias) const { return {to_scale_dtype(scale, t_), to_scale_dtype(bias, t_)}; }
  float q(float v, float s, float b) const {
    return s != 0.0f ? std::clamp(std::nearbyint((v - b) / s), 0.0f, n_bins_) : 0.0f;
  }
  double sq_error(Fit f) const {
    const float s = from_scale_dtype(f.s, t_), b = from_scale_dtype(f.b, t_);
    double e = 0.0;
    for (int i = 0; i < n_; ++i) {
      const double d = static_cast<double>(s) * q(w_[i], s, b) + b - w_[i];
      e += d * d;
    }
    return e;
  }

  Fit minmax(float lo, float hi) const { return rounded(std::max((hi - lo) / n_bins_, 1e-7f), lo); }

  Fit mse(float lo, float hi) const {
    Fit best = minmax(lo, hi);
    double best_err = sq_error(best);
    auto consider = [&](Fit f) {
      const double e = sq_error(f);
      if (e < best_err) best_err = e, best = f;
    };
    // The minmax fit moved so that 0 lands on a grid point (bias at the larger-magnitude end).
    const float s0 = std::max((hi - lo) / n_bins_, 1e-7f);
    const bool low_edge = std::fabs(lo) > std::fabs(hi);
    const float edge = low_edge ? lo : hi;
    const float signed_s = low_edge ? s0 : -s0, q0 = std::nearbyint(edge / signed_s);
    if (q0 != 0.0f && edge / q0 > 0.0f) consider(rounded(edge / q0, edge));
    // Clipped ranges: each end moved in by 0, 2, .., 20% of the range.
    for (int a = 0; a <= 10; ++a)
      for (int c = 0; c <= 10; ++c) {
        if (a == 0 && c == 0) continue;
        const float l = lo + (hi - lo) * 0.02f * static_cast<float>(a), h = hi - (hi - lo) * 0.02f * static_cast<float>(c);
        if (h > l) consider(rounded((h - l) / n_bins_, l));
      }
    // Least-squares refinement: for fixed q, the best (scale, bias) is a linear regression of w on q.
    for (int it = 0; it < 8; ++it) {
      const float s = from_scale_dtype(best.s, t_), b = from_scale_dtype(best.b, t_);
      double sq = 0, sqq = 0, sw = 0, sqw = 0;
      for (int i = 0; i < n_; ++i) {
        const double qi = q(w_[i], s, b);
        sq += qi, sqq += qi * qi, sw += w_[i], sqw += qi * w_[i];
      }
      const double det = n_ * sqq - sq * sq;
      if (det <= 0) break;
      const double ns = (n_ * sqw - sq * sw) / det, nb = (sw - ns * sq) / n_;
      if (!(ns > 0)) break;
      const Fit f = rounded(static_cast<float>(ns), static_cast<float>(nb));
      const double e = sq_error(f);
      if (e >= best_err) break;
      best_err = e, best = f;
    }
    return best;
  }

 private:
  const float* w_;
  int n_;
  float n_bins_;
  kernels::ScaleType t_;
};

}  // namespace

void quantize_affine_ref(const float* w, int64_t rows, int64_t cols, int bits, int group_size,
                         kernels::ScaleType scale_type, uint32_t* packed, uint16_t* scales, uint16_t* biases,
                         QuantMethod method) {
  const int64_t groups = cols / group_size, words = cols * bits / 32;
  const float n_bins = static_cast<float>((1 << bits) - 1);
  for (int64_t r = 0; r < rows; ++r) {
    const float* wr = w + r * cols;
    uint32_t* pr = packed + r * words;
    std::memset(pr, 0, static_cast<size_t>(words) * 4);
    for (int64_t g = 0; g < groups; ++g) {
      const float* wg = wr + g * group_size;
      const auto [lo_it, hi_it] = std::minmax_element(wg, wg + group_size);
      const GroupFitter fitter(wg, group_size, n_bins, scale_type);
      const Fit fit = method == QuantMethod::mse ? fitter.mse(*lo_it, *hi_it) : fitter.minmax(*lo_it, *hi_it);
      scales[r * groups + g] = fit.s;
      biases[r * groups + g] = fit.b;
      const float s = from_scale_dtype(fit.s, scale_type), b = from_scale_dtype(fit.b, scale_type);
      for (int i = 0; i < group_size; ++i) {
        const uint64_t v = static_cast<uint64_t>(fitter.q(wg[i], s, b));
        const int64_t bit = (g * group_size + i) * bits;
        pr[bit / 32] |= static_cast<uint32_t>(v << (bit % 32));
        if (bit % 32 + bits > 32) pr[bit / 32 + 1] |= static_cast<uint32_t>(v >> (32 - bit % 32));
      }
    }
  }
}

}  // namespace lmlab
