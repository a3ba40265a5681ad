// See quantize.h. The mse search evaluates its candidates with the vector loops of quantize_group.h
// (candidates in the lanes; no libm call per element); quantize_ref.cpp keeps the original scalar search,
// which tests/quantize_test.cpp holds this one to.
#include "convert/quantize.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>

#include "convert/quantize_group.h"
#include "util/half.h"

namespace lmlab {

namespace {

struct Fit {
  uint16_t s, b;  // stored scale and bias
};

// 1 minmax + 1 zero-aligned + 11 x 11 - 1 clipped ranges.
constexpr int kClipped = 120, kMaxCandidates = 2 + kClipped;
// Least-squares refinement runs from the best and, when within kSumNoise of it, the second-best candidate:
// float sums can order two near-equal candidates differently from the reference's double sums, and each may
// lead elsewhere.
constexpr int kRefineStarts = 2;
constexpr int kRefineSteps = 8;
constexpr float kSumNoise = 1e-5f;  // relative difference of float and double sums of a group's squared errors

// The clipped ranges' steps in from the low and the high end, (a, c) in 0..10 but not (0, 0), in the
// reference's order.
struct ClipTable {
  std::array<float, kClipped> a, c;
  constexpr ClipTable() : a(), c() {
    int j = 0;
    for (int x = 0; x <= 10; ++x)
      for (int y = 0; y <= 10; ++y)
        if (x != 0 || y != 0) a[j] = static_cast<float>(x), c[j] = static_cast<float>(y), ++j;
  }
};
constexpr ClipTable kClip;

// bf16 round-to-nearest-even as f32 -> f32, branch-free so the candidate loop vectorizes. Finite inputs only:
// the scalar f32_to_bf16 also keeps NaNs quiet, which the candidates (finite ranges) never need.
inline float round_bf16(float v) {
  uint32_t u;
  std::memcpy(&u, &v, 4);
  u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
  std::memcpy(&v, &u, 4);
  return v;
}

constexpr float kInf = std::numeric_limits<float>::infinity();

class GroupFitter {
 public:
  GroupFitter(const float* w, int n, float n_bins, kernels::ScaleType t) : w_(w), n_(n), n_bins_(n_bins), t_(t) {}

  // Scale or bias as stored (rounded to the output dtype), back in f32: to_scale_dtype of it is lossless.
  float stored(float v) const {
    return t_ == kernels::ScaleType::bf16 ? round_bf16(v) : from_scale_dtype(to_scale_dtype(v, t_), t_);
  }
  Fit fit(float s, float b) const { return {to_scale_dtype(s, t_), to_scale_dtype(b, t_)}; }

  Fit minmax(float lo, float hi) const { return fit(stored(std::max((hi - lo) / n_bins_, 1e-7f)), stored(lo)); }

  // The candidates of the reference fit (quantize_ref.cpp), computed with the same float operations and in its
  // order, all evaluated in one vector call; then least squares from the best kRefineStarts.
  Fit mse(float lo, float hi) const {
    std::array<float, kMaxCandidates> s, b, err;
    int k = 0;
    s[k] = stored(std::max((hi - lo) / n_bins_, 1e-7f)), b[k++] = stored(lo);
    // The minmax fit moved so that 0 lands on a grid point (bias at the larger-magnitude end).
    const float s0 = std::max((hi - lo) / n_bins_, 1e-7f);
    const bool low_edge = std::fabs(lo) > std::fabs(hi);
    const float edge = low_edge ? lo : hi;
    const float signed_s = low_edge ? s0 : -s0, q0 = std::nearbyint(edge / signed_s);
    if (q0 != 0.0f && edge / q0 > 0.0f) s[k] = stored(edge / q0), b[k++] = stored(edge);
    // Clipped ranges: each end moved in by 0, 2, .., 20% of the range.
    const float step = (hi - lo) * 0.02f;
    if (hi > lo) {
      std::array<float, kClipped> l, h;
      for (int j = 0; j < kClipped; ++j) l[j] = lo + step * kClip.a[j], h[j] = hi - step * kClip.c[j];
      for (int j = 0; j < kClipped; ++j) s[k + j] = (h[j] - l[j]) / n_bins_, b[k + j] = l[j];
      if (t_ == kernels::ScaleType::bf16) {
        for (int j = k; j < k + kClipped; ++j) s[j] = round_bf16(s[j]), b[j] = round_bf16(b[j]);
      } else {
        for (int j = k; j < k + kClipped; ++j) s[j] = stored(s[j]), b[j] = stored(b[j]);
      }
      group_errors(w_, n_, n_bins_, s.data(), b.data(), k + kClipped, err.data());
      // l >= h (float rounding of a tiny range) is skipped, as the reference does. Counted first: branch-free.
      int n_bad = 0;
      for (int j = 0; j < kClipped; ++j) n_bad += !(h[j] > l[j]);
      if (n_bad > 0)
        for (int j = 0; j < kClipped; ++j) err[k + j] = h[j] > l[j] ? err[k + j] : kInf;
      k += kClipped;
    } else {
      group_errors(w_, n_, n_bins_, s.data(), b.data(), k, err.data());
    }

    // The best kRefineStarts distinct candidates, first one on ties (as the reference's strict <).
    std::array<int, kRefineStarts> start;
    std::array<float, kRefineStarts> start_err;
    int n_start = 0;
    for (int r = 0; r < kRefineStarts; ++r) {
      if (r > 0) {  // a start's duplicates (same stored scale and bias) are no new start
        const float ps = s[start[r - 1]], pb = b[start[r - 1]];
        for (int j = 0; j < k; ++j) err[j] = (s[j] == ps) & (b[j] == pb) ? kInf : err[j];
      }
      const int best = first_min(err.data(), k);
      if (best < 0) break;
      start_err[n_start] = err[best];
      start[n_start++] = best;
    }
    if (n_start == 0) return fit(s[0], b[0]);  // no finite error (non-finite weights): minmax
    float best_s = s[start[0]], best_b = b[start[0]];
    double best_err = start_err[0];
    for (int i = 0; i < n_start; ++i) {
      // A start clearly behind the best is one the reference would not pick either: its sums differ from ours
      // by float rounding only.
      if (i > 0 && start_err[i] > start_err[0] * (1 + kSumNoise)) break;
      float rs = s[start[i]], rb = b[start[i]];
      double e = start_err[i];
      refine(&rs, &rb, &e);
      if (e < best_err) best_err = e, best_s = rs, best_b = rb;
    }
    return fit(best_s, best_b);
  }

 private:
  // For fixed q, the best (scale, bias) is a linear regression of w on q; repeat while the error drops.
  // (*s, *b, *err): the start in, the result out.
  void refine(float* s, float* b, double* err) const {
    GroupStats st = group_stats(w_, n_, n_bins_, *s, *b);
    const double sum_w = st.sum_w;
    for (int it = 0; it < kRefineSteps; ++it) {
      const double det = n_ * st.sum_qq - st.sum_q * st.sum_q;
      if (det <= 0) break;
      const double ns = (n_ * st.sum_qw - st.sum_q * sum_w) / det, nb = (sum_w - ns * st.sum_q) / n_;
      if (!(ns > 0)) break;
      const float fs = stored(static_cast<float>(ns)), fb = stored(static_cast<float>(nb));
      const GroupStats next = group_stats(w_, n_, n_bins_, fs, fb);
      if (next.err >= *err) break;
      *s = fs, *b = fb, *err = next.err, st = next;
    }
  }

  const float* w_;
  int n_;
  float n_bins_;
  kernels::ScaleType t_;
};

// Smallest and largest of v [n], n a multiple of 8: eight running pairs in minps / maxps form, so the loop
// vectorizes (std::minmax_element branches per element).
std::pair<float, float> min_max(const float* v, int n) {
  float lo[8], hi[8];
  for (int l = 0; l < 8; ++l) lo[l] = hi[l] = v[l];
  for (int i = 8; i < n; i += 8)
    for (int l = 0; l < 8; ++l) {
      lo[l] = v[i + l] < lo[l] ? v[i + l] : lo[l];
      hi[l] = v[i + l] > hi[l] ? v[i + l] : hi[l];
    }
  for (int l = 1; l < 8; ++l) lo[0] = lo[l] < lo[0] ? lo[l] : lo[0], hi[0] = hi[l] > hi[0] ? hi[l] : hi[0];
  return {lo[0], hi[0]};
}

// Appends n levels of `bits` each to a little-endian bit stream; n * bits is a multiple of 32.
void pack_levels(const uint8_t* q, int n, int bits, uint32_t* out) {
  uint64_t acc = 0;
  int held = 0;
  for (int i = 0; i < n; ++i) {
    acc |= static_cast<uint64_t>(q[i]) << held;
    held += bits;
    if (held >= 32) *out++ = static_cast<uint32_t>(acc), acc >>= 32, held -= 32;
  }
}

}  // namespace

void quantize_affine(const float* w, int64_t rows, int64_t cols, int bits, int group_size,
                     kernels::ScaleType scale_type, uint32_t* packed, uint16_t* scales, uint16_t* biases,
                     QuantMethod method) {
  const int64_t groups = cols / group_size, words = cols * bits / 32, group_words = group_size * bits / 32;
  const float n_bins = static_cast<float>((1 << bits) - 1);
  std::vector<uint8_t> q(static_cast<size_t>(group_size));
  for (int64_t r = 0; r < rows; ++r) {
    const float* wr = w + r * cols;
    for (int64_t g = 0; g < groups; ++g) {
      const float* wg = wr + g * group_size;
      const auto [lo, hi] = min_max(wg, group_size);
      const GroupFitter fitter(wg, group_size, n_bins, scale_type);
      const Fit fit = method == QuantMethod::mse ? fitter.mse(lo, hi) : fitter.minmax(lo, hi);
      scales[r * groups + g] = fit.s;
      biases[r * groups + g] = fit.b;
      const float s = from_scale_dtype(fit.s, scale_type), b = from_scale_dtype(fit.b, scale_type);
      group_levels(wg, group_size, n_bins, s, b, q.data());
      pack_levels(q.data(), group_size, bits, packed + r * words + g * group_words);
    }
  }
}

}  // namespace lmlab
