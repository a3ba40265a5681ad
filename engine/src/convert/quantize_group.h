// Vector evaluation of affine fits on one group of weights, the inner loops of the mse search (quantize.cpp).
// For a fit (s, b) each weight maps to the level q = round_half_even(clamp((w - b) * (1/s), 0, n_bins)) (q = 0
// when s = 0) and back to s * q + b. The clamp comes before the rounding, which gives nearbyint's result (the
// bounds are integers) and lets the scalar path round with the 1.5 * 2^23 add/subtract trick instead of a libm
// call. AVX-512 / AVX2 / scalar by kernels::cpu::active_isa(). Sums are in float (relative error ~1e-6: enough
// to rank candidates; the search refines from the best two, see quantize.cpp). n: a multiple of 32.
#pragma once

#include <cstdint>

namespace lmlab {

// err[j] = sum_i (s[j] * q_ij + b[j] - w[i])^2 for k candidate fits.  w [n], s [k], b [k], err [k]
void group_errors(const float* w, int n, float n_bins, const float* s, const float* b, int k, float* err);

// One fit's squared error and the sums of the least-squares fit of w on its levels q.
struct GroupStats {
  double err = 0, sum_q = 0, sum_qq = 0, sum_qw = 0, sum_w = 0;
};
GroupStats group_stats(const float* w, int n, float n_bins, float s, float b);

// Index of the first smallest of v [k], -1 when none is below +inf (NaN never is).
int first_min(const float* v, int k);

// The fit's levels, with (w - b) / s in place of (w - b) * (1/s): exactly the reference's levels for the same
// fit.  w [n] -> q [n]
void group_levels(const float* w, int n, float n_bins, float s, float b, uint8_t* q);

}  // namespace lmlab
