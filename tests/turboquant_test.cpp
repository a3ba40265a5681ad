// TurboQuant KV cache (engine/src/kv/turboquant): the rotation, the Lloyd-Max codebooks, bit packing, the
// codec's unbiased K inner-product estimator, exact memory accounting, and attention on the compressed cache
// against the reference attention (kernels/ref/attention.cpp) on every instruction-set path.
#include <gtest/gtest.h>

#include <array>
#include <functional>

#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/isa.h"
#include "kernels/kernels.h"
#include "kv/kv_layer_blocked.h"
#include "kv/turboquant/lane_sum.h"
#include "kv/turboquant/lloyd_max.h"
#include "kv/turboquant/pack.h"
#include "kv/turboquant/rng.h"
#include "kv/turboquant/tq_codec.h"
#include "kv/turboquant/tq_layer_spec.h"
#include "kv/turboquant/wht.h"
#include "lmlab/error.h"
#include "kv_test_helpers.h"
#include "tolerance.h"
#include "util/half.h"

namespace lmlab {
namespace {

using namespace turboquant;

using test::for_each_isa;
using test::gaussian;

double dot(const float* a, const float* b, int64_t n) {
  double s = 0.0;
  for (int64_t i = 0; i < n; ++i) s += static_cast<double>(a[i]) * b[i];
  return s;
}

// ------------------------------------------------------------------------------------------- rotation

TEST(TurboQuantWht, FwhtIsOrthogonalAndSelfInverse) {
  for (int64_t n : {16, 32, 64, 128, 256}) {
    SCOPED_TRACE("n " + std::to_string(n));
    // Columns of H / sqrt(n) from the basis vectors.
    std::vector<float> m(static_cast<size_t>(n * n), 0.0f);
    const float inv = 1.0f / std::sqrt(static_cast<float>(n));
    for (int64_t j = 0; j < n; ++j) {
      std::vector<float> e(static_cast<size_t>(n), 0.0f);
      e[j] = 1.0f;
      fwht(e.data(), n);
      for (int64_t i = 0; i < n; ++i) m[i * n + j] = e[i] * inv;
    }
    for (int64_t a = 0; a < n; ++a)
      for (int64_t b = 0; b < n; ++b) {
        double s = 0.0;
        for (int64_t i = 0; i < n; ++i) s += static_cast<double>(m[i * n + a]) * m[i * n + b];
        ASSERT_NEAR(s, a == b ? 1.0 : 0.0, 1e-6) << "columns " << a << ", " << b;
      }
    // Self-inverse: (H / sqrt(n))^2 = I.
    SplitMix64 rng(n);
    const auto x = gaussian(rng, n);
    auto y = x;
    fwht(y.data(), n);
    fwht(y.data(), n);
    for (auto& v : y) v /= static_cast<float>(n);
    test::expect_close(y, x, test::tolerance(kernels::WeightType::f32, n), "H H x / n");
  }
}

TEST(TurboQuantWht, RandomizedRotationIsOrthogonal) {
  for (int64_t d : {32, 64, 128, 256}) {
    SCOPED_TRACE("head_dim " + std::to_string(d));
    HeadRotation rot(d, 1234);
    EXPECT_EQ(rot.group_dim(), std::min<int64_t>(d, 128));
    EXPECT_EQ(rot.n_groups(), d / rot.group_dim());
    SplitMix64 rng(d);
    const auto x = gaussian(rng, d), z = gaussian(rng, d);
    std::vector<float> y(x.size()), w(x.size()), back(x.size());
    rot.forward(x.data(), y.data());
    rot.forward(z.data(), w.data());
    EXPECT_NEAR(dot(y.data(), w.data(), d), dot(x.data(), z.data(), d), 1e-4 * d) << "inner products kept";
    EXPECT_NEAR(dot(y.data(), y.data(), d), dot(x.data(), x.data(), d), 1e-4 * d) << "norm kept";
    rot.inverse(y.data(), back.data());
    test::expect_close(back, x, test::tolerance(kernels::WeightType::f32, d), "inverse(forward(x))");
    // A different seed is a different rotation.
    HeadRotation other(d, 1235);
    other.forward(x.data(), w.data());
    EXPECT_GT(std::fabs(w[0] - y[0]) + std::fabs(w[1] - y[1]), 1e-3);
  }
}

// ------------------------------------------------------------------------------------------- codebooks

// Independent check by composite Simpson integration of the N(0, 1) density (not the closed forms the solver
// uses): each centroid is its cell's conditional mean, each boundary the midpoint of its neighbours.
TEST(TurboQuantLloydMax, CentroidsSatisfyLloydConditions) {
  auto phi = [](double x) { return std::exp(-0.5 * x * x) / std::sqrt(2.0 * M_PI); };
  auto integrate = [&](double a, double b, auto f) {
    a = std::max(a, -12.0);
    b = std::min(b, 12.0);
    const int n = 20000;
    const double h = (b - a) / n;
    double s = f(a) * phi(a) + f(b) * phi(b);
    for (int i = 1; i < n; ++i) s += (i % 2 ? 4.0 : 2.0) * f(a + i * h) * phi(a + i * h);
    return s * h / 3.0;
  };
  const double known_distortion[] = {0.0, 0.3634, 0.1175, 0.03454, 0.009497, 0.002505};  // Max (1960), 2..32 levels
  for (int bits = 1; bits <= 5; ++bits) {
    SCOPED_TRACE("bits " + std::to_string(bits));
    const GaussianLloydMax q = solve_gaussian_lloyd_max(bits);
    const int n = 1 << bits;
    ASSERT_EQ(static_cast<int>(q.centroids.size()), n);
    ASSERT_EQ(static_cast<int>(q.boundaries.size()), n - 1);
    double distortion = 0.0;
    for (int k = 0; k < n; ++k) {
      const double a = k == 0 ? -INFINITY : q.boundaries[k - 1], b = k == n - 1 ? INFINITY : q.boundaries[k];
      const double mass = integrate(a, b, [](double) { return 1.0; });
      const double mean = integrate(a, b, [](double x) { return x; }) / mass;
      EXPECT_NEAR(q.centroids[k], mean, 1e-9) << "centroid " << k << " is its cell's conditional mean";
      EXPECT_NEAR(q.centroids[k], -q.centroids[n - 1 - k], 1e-12) << "symmetric";
      const double c = q.centroids[k];
      distortion += integrate(a, b, [c](double x) { return (x - c) * (x - c); });
      if (k + 1 < n) {
        EXPECT_DOUBLE_EQ(q.boundaries[k], 0.5 * (q.centroids[k] + q.centroids[k + 1])) << "boundary " << k;
      }
    }
    EXPECT_NEAR(q.distortion, distortion, 1e-9);
    EXPECT_NEAR(q.distortion, known_distortion[bits], 2e-3 * known_distortion[bits]);
    // The per-dimension codebook is the unit one scaled by 1/sqrt(d), and cached.
    const Codebook& cb = lloyd_max_codebook(bits, 128);
    EXPECT_EQ(&cb, &lloyd_max_codebook(bits, 128));
    // Each centroid is the f16 value nearest the scaled one (the GPU's tensor cores take it exactly), each boundary
    // the midpoint of its neighbours, at every group dim the codec uses.
    for (const int64_t d : {16, 32, 64, 128}) {
      const Codebook& cd = lloyd_max_codebook(bits, d);
      for (int k = 0; k < n; ++k) {
        const float exact = static_cast<float>(q.centroids[k] / std::sqrt(static_cast<double>(d)));
        EXPECT_EQ(cd.centroids[k], f16_to_f32(f32_to_f16(exact))) << "centroid " << k << " at d " << d;
        EXPECT_LE(std::fabs(cd.centroids[k] - exact), std::ldexp(std::fabs(exact), -11)) << "centroid " << k;
        if (k + 1 < n) EXPECT_FLOAT_EQ(cd.boundaries[k], 0.5f * (cd.centroids[k] + cd.centroids[k + 1]));
      }
    }
    EXPECT_NEAR(cb.distortion * 128.0, q.distortion, 1e-12);
  }
}

TEST(TurboQuantLloydMax, QuantizerMseOnGaussianSamplesMatchesDistortion) {
  for (int bits : {2, 3, 4, 5})
    for (int64_t d : {64, 128}) {
      SCOPED_TRACE("bits " + std::to_string(bits) + ", d " + std::to_string(d));
      const Codebook& cb = lloyd_max_codebook(bits, d);
      SplitMix64 rng(bits * 1000 + d);
      const double sigma = 1.0 / std::sqrt(static_cast<double>(d));
      const int n = 1'000'000;
      double se = 0.0;
      for (int i = 0; i < n; ++i) {
        const float x = static_cast<float>(sigma * rng.gaussian());
        const double e = x - cb.centroids[cb.quantize(x)];
        se += e * e;
      }
      const double mse = se / n;
      EXPECT_NEAR(mse / cb.distortion, 1.0, 0.02) << "mse " << mse << " vs distortion " << cb.distortion;
    }
}

// ------------------------------------------------------------------------------------------- packing

TEST(TurboQuantPack, CodesAndSignsRoundTrip) {
  SplitMix64 rng(7);
  for (int bits = 1; bits <= 5; ++bits)
    for (int64_t n : {8, 16, 64, 128, 256}) {
      std::vector<uint8_t> idx(static_cast<size_t>(n)), back(idx.size()), packed(static_cast<size_t>(bits * n / 8));
      for (auto& v : idx) v = static_cast<uint8_t>(rng.next() & ((1u << bits) - 1));
      pack_planes(idx.data(), n, bits, packed.data());
      unpack_planes(packed.data(), n, bits, back.data());
      EXPECT_EQ(back, idx) << "bits " << bits << ", n " << n;
    }
  // Layout: plane p holds bit p of each index, entry i at byte i / 8, bit i % 8.
  std::vector<uint8_t> idx(16, 0), packed(6);
  idx[0] = 5;  // 0b101
  idx[9] = 6;  // 0b110
  pack_planes(idx.data(), 16, 3, packed.data());
  EXPECT_EQ(packed, (std::vector<uint8_t>{0x01, 0x00, 0x00, 0x02, 0x01, 0x02}));
  // Nibbles: 16 entries per little-endian uint64, entry j at bit 32 (j % 2) + 4 (j / 2).
  std::vector<uint8_t> nib(16), nib_packed(8);
  for (int j = 0; j < 16; ++j) nib[j] = static_cast<uint8_t>(j);
  pack_codes(nib.data(), 16, 4, nib_packed.data());
  EXPECT_EQ(nib_packed, (std::vector<uint8_t>{0x20, 0x64, 0xa8, 0xec, 0x31, 0x75, 0xb9, 0xfd}));
  for (int bits : {1, 2, 3, 4, 5, 8})
    for (int64_t n : {16, 64, 128}) {
      std::vector<uint8_t> idx(static_cast<size_t>(n)), back(idx.size()), packed(static_cast<size_t>(bits * n / 8));
      for (auto& v : idx) v = static_cast<uint8_t>(rng.next() & ((1u << bits) - 1));
      pack_codes(idx.data(), n, bits, packed.data());
      unpack_codes(packed.data(), n, bits, back.data());
      EXPECT_EQ(back, idx) << "pack_codes bits " << bits << ", n " << n;
    }
  std::vector<float> x = {1.0f, -2.0f, 0.0f, -0.5f, 3.0f, -1.0f, -1.0f, 2.0f}, s(8);
  uint8_t byte = 0;
  pack_signs(x.data(), 8, &byte);
  EXPECT_EQ(byte, 0b10010101);
  unpack_signs(&byte, 8, s.data());
  for (int i = 0; i < 8; ++i) EXPECT_EQ(s[i], x[i] >= 0.0f ? 1.0f : -1.0f);
}

// ------------------------------------------------------------------------------------------- codec

TEST(TurboQuantCodec, RecordBytesFollowTheFormula) {
  for (int64_t d : {32, 64, 128, 256}) {
    const int64_t g = std::min<int64_t>(d, 128), ng = d / g;
    for (int bits : {2, 3, 4, 5}) {
      EXPECT_EQ(make_lloyd_max_format(d, bits, true).record_bytes(), ng * (bits * g / 8 + g / 8 + 4));
      EXPECT_EQ(make_lloyd_max_format(d, bits, false).record_bytes(), ng * (bits * g / 8 + 2));
      EXPECT_EQ(make_f16_format(d).record_bytes(), 2 * d);
    }
    EXPECT_EQ(make_affine_format(d, 4).record_bytes(), ng * (g / 2 + 4));
    EXPECT_EQ(make_affine_format(d, 8).record_bytes(), ng * (g + 4));
  }
  // The headline rates at head_dim 128: K 3 bits + QJL = 4.25 bits/dim, V 3 bits = 3.125 bits/dim.
  EXPECT_EQ(make_lloyd_max_format(128, 3, true).record_bytes() * 8, 128 * 425 / 100);
  EXPECT_EQ(make_lloyd_max_format(128, 3, false).record_bytes() * 8, 128 * 3125 / 1000);
  // The default K: 5 bits = 5.125 bits/dim at head_dim 128.
  EXPECT_EQ(make_lloyd_max_format(128, 5, false).record_bytes(), 82);
  EXPECT_THROW(make_lloyd_max_format(128, 6, true), Error);
  EXPECT_THROW(make_lloyd_max_format(128, 1, false), Error);
  EXPECT_THROW(make_lloyd_max_format(40, 3, true), Error);
  EXPECT_THROW(make_affine_format(128, 3), Error);
}

// Without QJL the encoder picks, among the nearest codewords to lambda u over a grid of scales, the one of smallest
// angle to u (tq_codec.cpp): never a larger angle than Algorithm 1's per-coordinate codes, ~20-27% lower mean tan^2
// on Gaussian vectors at 4 and 5 bits, and the record stays unbiased along x: <x_hat, x> = ||x||^2.
TEST(TurboQuantCodec, CodesMinimiseTheAngleToTheVector) {
  for (int64_t d : {64, 128})
    for (int bits : {4, 5}) {
      SCOPED_TRACE("d " + std::to_string(d) + ", bits " + std::to_string(bits));
      const TqCodec codec(make_lloyd_max_format(d, bits, false), 1);
      const Codebook& cb = *codec.codebook();
      const int64_t rec_bytes = codec.format().record_bytes();
      SplitMix64 rng(d * 10 + bits);
      double tan2_plain = 0.0, tan2_coded = 0.0;
      const int n = 2000;
      for (int t = 0; t < n; ++t) {
        const auto x = gaussian(rng, d, 3.0);
        const double xx = dot(x.data(), x.data(), d);
        std::vector<float> plain(static_cast<size_t>(d)), xh(plain.size());
        for (int64_t i = 0; i < d; ++i)
          plain[i] = cb.centroids[cb.quantize(static_cast<float>(x[i] / std::sqrt(xx)))];
        std::vector<uint8_t> rec(static_cast<size_t>(rec_bytes));
        codec.encode(x.data(), d, 1, rec.data(), rec_bytes);
        codec.dequantize(rec.data(), xh.data());
        const double cos_plain = dot(x.data(), plain.data(), d) / std::sqrt(xx * dot(plain.data(), plain.data(), d));
        const double xhx = dot(xh.data(), x.data(), d);
        const double cos_coded = xhx / std::sqrt(xx * dot(xh.data(), xh.data(), d));
        ASSERT_GE(cos_coded, cos_plain - 1e-6) << "vector " << t;
        ASSERT_NEAR(xhx, xx, 2e-3 * xx) << "unbiased along x (fp16 scalar)";
        tan2_plain += 1.0 / (cos_plain * cos_plain) - 1.0;
        tan2_coded += 1.0 / (cos_coded * cos_coded) - 1.0;
      }
      std::printf("[          ] d %3lld, %d bits: mean tan^2 %.6f per coordinate codes, %.6f angle-chosen codes\n",
                  static_cast<long long>(d), bits, tan2_plain / n, tan2_coded / n);
      EXPECT_LT(tan2_coded, 0.88 * tan2_plain);
    }
}

// The score row the kernels use is the paper's DeQuant: <q', row(x)> = <q, x_hat>.
TEST(TurboQuantCodec, ScoreRowMatchesDequantize) {
  for (int64_t d : {64, 128, 256})
    for (bool qjl : {true, false}) {
      SCOPED_TRACE("d " + std::to_string(d) + (qjl ? " qjl" : ""));
      const TqCodec codec(make_lloyd_max_format(d, 3, qjl), 99);
      const TqFormat& f = codec.format();
      SplitMix64 rng(d);
      for (int trial = 0; trial < 20; ++trial) {
        const auto x = gaussian(rng, d), q = gaussian(rng, d);
        std::vector<uint8_t> rec(static_cast<size_t>(f.record_bytes()));
        std::vector<float> row(static_cast<size_t>(f.row_floats())), qp(row.size()), xh(static_cast<size_t>(d));
        codec.encode(x.data(), d, 1, rec.data(), f.record_bytes());
        codec.decode_row(rec.data(), row.data());
        codec.prepare_queries(q.data(), 1, qp.data());
        codec.dequantize(rec.data(), xh.data());
        const double a = dot(qp.data(), row.data(), f.row_floats()), b = dot(q.data(), xh.data(), d);
        EXPECT_NEAR(a, b, 1e-4 * std::sqrt(dot(q.data(), q.data(), d) * dot(x.data(), x.data(), d)));
      }
    }
}

// Theorem 2: E[<q, x_hat>] = <q, x> over the quantizer's randomness (the rotation and the QJL matrix S).
// 1e5 pairs under 1000 independently seeded quantizers (100 pairs each); q = k + noise so that <q, k> has a
// non-zero mean and a biased estimator shows. The standard error is taken from the 1000 per-quantizer means.
// The MSE stage alone (QJL term dropped) is biased by -D_b <q, k> (the bias TurboQuant_prod removes) and must be
// caught.
TEST(TurboQuantCodec, KInnerProductEstimatorIsUnbiased) {
  const int64_t d = 128;
  const int n_quantizers = 1000, pairs = 100;
  std::vector<double> mean_err, mean_err_mse;
  double sq_err = 0.0, bound = 0.0;
  SplitMix64 data(2024);
  for (int s = 0; s < n_quantizers; ++s) {
    const uint64_t seed = 0x1000 + s;
    const HeadRotation rot(d, seed);
    const TqCodec codec(make_lloyd_max_format(d, 3, true), seed ^ 0xabcdef);
    const TqFormat& f = codec.format();
    std::vector<float> ks(static_cast<size_t>(pairs * d)), qs(ks.size());
    std::vector<double> truth(pairs);
    for (int i = 0; i < pairs; ++i) {
      const auto k = gaussian(data, d), n = gaussian(data, d);
      std::vector<float> q(static_cast<size_t>(d));
      for (int64_t j = 0; j < d; ++j) q[j] = k[j] + n[j];
      truth[i] = dot(q.data(), k.data(), d);
      rot.forward(k.data(), ks.data() + i * d);
      rot.forward(q.data(), qs.data() + i * d);
    }
    std::vector<uint8_t> recs(static_cast<size_t>(pairs * f.record_bytes()));
    codec.encode(ks.data(), d, pairs, recs.data(), f.record_bytes());
    std::vector<float> qp(static_cast<size_t>(pairs * f.row_floats())), row(static_cast<size_t>(f.row_floats()));
    codec.prepare_queries(qs.data(), pairs, qp.data());
    double sum = 0.0, sum_mse = 0.0;
    for (int i = 0; i < pairs; ++i) {
      const uint8_t* rec = recs.data() + i * f.record_bytes();
      codec.decode_row(rec, row.data());
      const float* qi = qp.data() + i * f.row_floats();
      const double mse_part = dot(qi, row.data(), d);
      const double err = mse_part + dot(qi + d, row.data() + d, d) - truth[i];
      sum += err;
      sum_mse += mse_part - truth[i];
      // Lemma 4: Var <= pi / (2d) ||q||^2 ||r||^2, r = ||k|| (u - c[idx]) the residual the QJL term encodes.
      uint16_t h[2];
      std::memcpy(h, rec + f.scalar_offset(), 4);
      const double r_norm = static_cast<double>(f16_to_f32(h[0])) * f16_to_f32(h[1]);
      sq_err += err * err;
      bound += M_PI / (2.0 * d) * dot(qs.data() + i * d, qs.data() + i * d, d) * r_norm * r_norm;
    }
    mean_err.push_back(sum / pairs);
    mean_err_mse.push_back(sum_mse / pairs);
  }
  auto z_score = [](const std::vector<double>& v, double* mean) {
    const double n = static_cast<double>(v.size());
    *mean = std::accumulate(v.begin(), v.end(), 0.0) / n;
    double var = 0.0;
    for (double x : v) var += (x - *mean) * (x - *mean);
    const double se = std::sqrt(var / (n - 1) / n);
    return *mean / se;
  };
  double mean, mean_mse;
  const double z = z_score(mean_err, &mean), z_mse = z_score(mean_err_mse, &mean_mse);
  EXPECT_LT(std::fabs(z), 3.0) << "mean error " << mean << " (E<q,k> = " << d << ")";
  EXPECT_GT(std::fabs(z_mse), 3.0) << "the MSE-only estimator is biased; mean error " << mean_mse;
  EXPECT_LE(sq_err, bound) << "mean squared error over Lemma 4's variance bound";
  std::printf(
      "[          ] K estimator mean error %.4f (z %.2f), squared error %.3f x Lemma 4's bound; MSE stage"
      " alone %.4f (z %.1f); E<q,k> = %lld\n",
      mean, z, sq_err / bound, mean_mse, z_mse, static_cast<long long>(d));
}

// ------------------------------------------------------------------------------------------- sum order

// The encoder's double sums run in lane_sum.h's order so that tq_encode_kernel's warp computes each in five shuffle
// steps; CudaTurboQuant.DeviceRecordsEqualTheCpuCodecs holds the device's records to these. The reference is the
// warp itself, simulated: lane l's partial over i = l, l + 32, ... in increasing i, then every lane adding its xor
// partner's partial at o = 16, 8, 4, 2, 1 (all lanes must end equal).
double warp_order_reference(const std::vector<double>& t) {
  std::array<double, 32> p{};
  for (size_t i = 0; i < t.size(); ++i) p[i % 32] += t[i];
  for (int o = 16; o > 0; o >>= 1) {
    std::array<double, 32> q;
    for (int l = 0; l < 32; ++l) q[l] = p[l] + p[l ^ o];
    p = q;
  }
  for (int l = 1; l < 32; ++l) EXPECT_EQ(std::memcmp(&p[l], &p[0], sizeof(double)), 0) << "lane " << l;
  return p[0];
}

bool same_double(double a, double b) { return std::memcmp(&a, &b, sizeof(double)) == 0; }

TEST(TurboQuantSumOrder, LaneOrderSumIsTheWarpButterfly) {
  SplitMix64 rng(17);
  int differs_from_index_order = 0;
  for (int64_t g : {16, 32, 64, 128})
    for (int trial = 0; trial < 200; ++trial) {
      std::vector<double> t(static_cast<size_t>(g));
      for (auto& v : t) v = rng.gaussian() * std::ldexp(1.0, static_cast<int>(rng.next() % 41) - 20);
      const double sum = lane_order_sum(t.data(), g);
      ASSERT_TRUE(same_double(sum, warp_order_reference(t))) << "g " << g << ", trial " << trial;
      double seq = 0.0;
      for (double v : t) seq += v;
      differs_from_index_order += !same_double(sum, seq);
    }
  EXPECT_GT(differs_from_index_order, 100) << "the terms must tell the orders apart";
}

// TqCodec's lloyd_max record written plainly: the codes nearest to lambda_s u at every scale (quantize, where the
// codec steps codes from scale to scale), every sum through the warp simulation, the choice as tq_codec.cpp
// states it (the smallest angle, lambda = 1 on ties). With QJL: codes and the two scalars (the signs come from the
// projection, untouched by the sums' order).
std::vector<uint8_t> reference_record(const TqCodec& codec, const float* x) {
  const TqFormat& f = codec.format();
  const Codebook& cb = *codec.codebook();
  const int64_t g = f.group_dim;
  std::vector<double> t(static_cast<size_t>(g)), cc(t.size());
  for (int64_t i = 0; i < g; ++i) t[i] = static_cast<double>(x[i]) * x[i];
  const double norm = std::sqrt(warp_order_reference(t)), inv = norm > 0.0 ? 1.0 / norm : 0.0;
  std::vector<float> u(static_cast<size_t>(g));
  for (int64_t i = 0; i < g; ++i) u[i] = static_cast<float>(x[i] * inv);
  std::vector<uint8_t> rec(static_cast<size_t>(f.group_bytes())), k(u.size()), chosen(u.size());
  uint16_t scalars[2];
  if (f.qjl) {
    for (int64_t i = 0; i < g; ++i) {
      chosen[i] = static_cast<uint8_t>(cb.quantize(u[i]));
      const float r = u[i] - cb.centroids[chosen[i]];
      t[i] = static_cast<double>(r) * r;
    }
    scalars[0] = f32_to_f16(static_cast<float>(norm));
    scalars[1] = f32_to_f16(static_cast<float>(std::sqrt(warp_order_reference(t))));
  } else {
    auto at_scale = [&](int s, double* dot) {  // codes into k; returns the cosine
      for (int64_t i = 0; i < g; ++i) {
        const float v = s == 0 ? static_cast<float>(u[i] * (1.0 - kAngleSpan)) : u[i] * angle_scale(s);
        k[i] = static_cast<uint8_t>(cb.quantize(v));
        t[i] = static_cast<double>(u[i]) * cb.centroids[k[i]];
        cc[i] = static_cast<double>(cb.centroids[k[i]]) * cb.centroids[k[i]];
      }
      *dot = warp_order_reference(t);
      const double c2 = warp_order_reference(cc);
      return c2 > 0.0 ? *dot / std::sqrt(c2) : -1.0;
    };
    double best = -2.0, best_dot = 0.0, dot;
    for (int s = 0; s < kAngleScales; ++s) {
      if (s == kAngleScales / 2) continue;
      const double cs = at_scale(s, &dot);
      if (cs > best) best = cs, best_dot = dot, chosen = k;
    }
    if (at_scale(kAngleScales / 2, &dot) >= best) best_dot = dot, chosen = k;
    scalars[0] = f32_to_f16(static_cast<float>(best_dot > 0.0 ? norm / best_dot : norm));
  }
  pack_codes(chosen.data(), g, f.bits, rec.data());
  std::memcpy(rec.data() + f.scalar_offset(), scalars, static_cast<size_t>(2 * f.n_scalars()));
  return rec;
}

TEST(TurboQuantSumOrder, RecordsEqualTheWarpOrderReference) {
  for (int64_t g : {16, 32, 64, 128})
    for (int bits : {2, 3, 4, 5})
      for (bool qjl : {false, true}) {
        SCOPED_TRACE("g " + std::to_string(g) + ", bits " + std::to_string(bits) + (qjl ? " qjl" : ""));
        const TqCodec codec(make_lloyd_max_format(g, bits, qjl), 5);
        const TqFormat& f = codec.format();
        ASSERT_EQ(f.n_groups, 1);
        SplitMix64 rng(g * 10 + bits);
        const int n = 100;
        std::vector<float> x = gaussian(rng, n * g, 2.0);
        std::fill(x.begin(), x.begin() + g, 0.0f);  // a zero vector
        std::vector<uint8_t> recs(static_cast<size_t>(n * f.record_bytes()));
        codec.encode(x.data(), g, n, recs.data(), f.record_bytes());
        for (int v = 0; v < n; ++v) {
          const uint8_t* rec = recs.data() + v * f.record_bytes();
          const std::vector<uint8_t> want = reference_record(codec, x.data() + v * g);
          ASSERT_EQ(std::memcmp(rec, want.data(), static_cast<size_t>(f.code_bytes())), 0) << "codes of vector " << v;
          ASSERT_EQ(std::memcmp(rec + f.scalar_offset(), want.data() + f.scalar_offset(), 2 * f.n_scalars()), 0)
              << "scalars of vector " << v;
        }
      }
}

// Gaussian records hardly ever depend on the order (a sum moved by an ulp seldom moves an f16 scalar or a choice),
// so one vector where it does: seven powers of two whose squares sum to (1 + 2^-11 + 2^-24)^2 exactly (a float
// rounding tie, down to 1 + 2^-11, itself an f16 tie, down to 1: the scalar ||x|| is 1 there and 1 + 2^-10 just
// above), plus 121 squares of 2^-54. Index order absorbs each into the running 1.x, so the scalar is 1; the lanes
// add them up before the last steps, so it is 1 + 2^-10, as the exact sum's.
TEST(TurboQuantSumOrder, TheNormOfAQjlRecordFollowsTheLaneOrder) {
  const int64_t g = 128;
  std::vector<float> x(static_cast<size_t>(g), std::ldexp(1.0f, -27));
  const int big_exp[] = {0, -5, -11, -12, -12, -17, -24};
  for (int i = 0; i < 7; ++i) x[i] = std::ldexp(1.0f, big_exp[i]);
  std::vector<double> t(static_cast<size_t>(g));
  for (int64_t i = 0; i < g; ++i) t[i] = static_cast<double>(x[i]) * x[i];
  double seq = 0.0;
  for (double v : t) seq += v;
  const uint16_t index_order = f32_to_f16(static_cast<float>(std::sqrt(seq)));
  const uint16_t lane_order = f32_to_f16(static_cast<float>(std::sqrt(warp_order_reference(t))));
  ASSERT_EQ(index_order, 0x3c00);  // 1
  ASSERT_EQ(lane_order, 0x3c01);   // 1 + 2^-10
  const TqCodec codec(make_lloyd_max_format(g, 3, true), 1);
  const TqFormat& f = codec.format();
  std::vector<uint8_t> rec(static_cast<size_t>(f.record_bytes()));
  codec.encode(x.data(), g, 1, rec.data(), f.record_bytes());
  uint16_t norm;
  std::memcpy(&norm, rec.data() + f.scalar_offset(), 2);
  EXPECT_EQ(norm, lane_order);
}

// ------------------------------------------------------------------------------------------- the cache

constexpr int64_t kBlockTokens = 64;

// A compressed layer with a pool of its own (unlimited, blocks of kBlockTokens positions).
struct TurboLayer {
  KvBlockPool pool{kBlockTokens};
  KvLayerBlocked layer;
  TurboLayer(const KvGeometry& g, const TurboKvOptions& o) : layer(pool, turbo_kv_layer_spec(g, o)) {}
};

std::vector<float> random_tokens(SplitMix64& rng, int64_t n, const KvGeometry& g, int64_t heads) {
  return gaussian(rng, n * heads * g.head_dim);
}

TEST(TurboQuantKvLayer, BytesPerTokenAreExactlyTheFormula) {
  for (const KvGeometry geo : {KvGeometry{8, 2, 128}, KvGeometry{4, 2, 64}, KvGeometry{8, 2, 256}}) {
    SCOPED_TRACE("head_dim " + std::to_string(geo.head_dim));
    const int64_t d = geo.head_dim, g = std::min<int64_t>(d, 128), ng = d / g, B = kBlockTokens;
    // K: 3-bit codes + QJL signs + fp16 norm and residual norm; V: 3-bit codes + fp16 scale, per group.
    const uint64_t k_rec = ng * (3 * g / 8 + g / 8 + 4), v_rec = ng * (3 * g / 8 + 2);
    const uint64_t per_token = geo.n_kv_heads * (k_rec + v_rec);
    TurboKvOptions opt;
    opt.k_bits = 3;
    opt.k_qjl = true;
    opt.v_bits = 3;
    opt.hot_window = 0;
    // The default (5-bit K, 4-bit V, fp16 scale each): (5 g / 8 + 2) + (4 g / 8 + 2) per group and KV head.
    EXPECT_EQ(turbo_kv_packed_bytes_per_token(geo, TurboKvOptions{}),
              geo.n_kv_heads * ng * ((5 * g / 8 + 2) + (4 * g / 8 + 2)));
    TurboLayer layer_owner(geo, opt);
    KvLayerBlocked& layer = layer_owner.layer;
    EXPECT_EQ(layer.record_bytes_per_token(), per_token);
    EXPECT_EQ(turbo_kv_packed_bytes_per_token(geo, opt), per_token);
    EXPECT_EQ(layer.bytes(), 0u);
    SplitMix64 rng(1);
    const auto kv = random_tokens(rng, 10 * B + 10, geo, geo.n_kv_heads);
    layer.append(kv.data(), kv.data(), 10 * B);
    EXPECT_EQ(layer.bytes(), 10 * B * per_token);
    layer.append(kv.data(), kv.data(), 10);  // an eleventh block, allocated whole
    EXPECT_EQ(layer.bytes(), 11 * B * per_token);
    layer.truncate(5 * B);
    EXPECT_EQ(layer.bytes(), 5 * B * per_token);
    EXPECT_EQ(layer.n_tokens(), 5 * B);

    // Hot window: the newest 256 positions in f32, in blocks of B positions.
    TurboKvOptions hot = opt;
    hot.hot_window = 256;
    TurboLayer h_owner(geo, hot);
    KvLayerBlocked& h = h_owner.layer;
    h.append(kv.data(), kv.data(), 10 * B + 10);  // 650 positions: packed [0, 394), hot [394, 650)
    const uint64_t hot_per_token = geo.n_kv_heads * d * 2 * 4;
    EXPECT_EQ(h.n_compressed(), 10 * B + 10 - 256);
    const int64_t packed_blocks = (h.n_compressed() + B - 1) / B,
                  hot_blocks = (10 * B + 10 - 1) / B - h.n_compressed() / B + 1;
    EXPECT_EQ(h.bytes(), packed_blocks * B * per_token + hot_blocks * B * hot_per_token);
  }
  // At 32K context the default TurboQuant cache (5-bit K, 4-bit V, every token compressed) is <= 0.29x an fp16
  // cache: (82 + 66) / 512 bytes per token and KV head at head_dim 128.
  const KvGeometry geo{8, 2, 128};
  TurboLayer layer_owner(geo, TurboKvOptions{});
  KvLayerBlocked& layer = layer_owner.layer;
  const int64_t n = 32768;
  std::vector<float> kv(static_cast<size_t>(1024 * geo.n_kv_heads * geo.head_dim), 0.25f);
  for (int64_t i = 0; i < n; i += 1024) layer.append(kv.data(), kv.data(), 1024);
  const double fp16 = static_cast<double>(n) * geo.n_kv_heads * geo.head_dim * 2 * 2;
  EXPECT_LE(layer.bytes() / fp16, 0.29);
  std::printf("[          ] 32K tokens, 2 KV heads x 128: %llu bytes = %.3f x fp16\n",
              static_cast<unsigned long long>(layer.bytes()), layer.bytes() / fp16);
}

// ------------------------------------------------------------------------------------------- attention

struct AttnCase {
  KvGeometry geo;
  AttentionSpec spec;
  const char* name;
};

std::vector<AttnCase> attn_cases() {
  return {
      {{8, 2, 128}, {1.0f / std::sqrt(128.0f), 0.0f, 0}, "gqa4 d128"},
      {{8, 2, 128}, {1.0f / std::sqrt(128.0f), 0.0f, 48}, "gqa4 d128 window 48"},
      {{4, 2, 64}, {0.125f, 0.0f, 0}, "coder-dense 4/2 x 64"},
      {{4, 4, 32}, {0.2f, 5.0f, 20}, "mha d32 softcap window 20"},
      {{4, 1, 256}, {1.0f / 16.0f, 0.0f, 0}, "mqa d256"},
      {{40, 1, 32}, {0.2f, 0.0f, 0}, "mqa 40 heads d32"},
  };
}

// Reference attention of queries at positions [q_pos0, q_pos0 + n_q) over k, v [n_kv, n_kv_heads, d].
std::vector<float> reference(const AttnCase& c, const std::vector<float>& q, int64_t n_q, int64_t q_pos0,
                             const std::vector<float>& k, const std::vector<float>& v, int64_t n_kv) {
  std::vector<float> out(static_cast<size_t>(n_q * c.geo.n_heads * c.geo.head_dim));
  kernels::ref::attention({q.data(), k.data(), v.data(), out.data(), n_q, n_kv, c.geo.n_heads, c.geo.n_kv_heads,
                           c.geo.head_dim, q_pos0, 0, c.spec.scale, c.spec.softcap, c.spec.window});
  return out;
}

// The call schedule both sides follow: prefill chunks of 37..136 tokens up to n0, then n_decode single tokens.
void for_each_step(int64_t n0, int64_t n_decode, const std::function<void(int64_t)>& step) {
  for (int64_t done = 0; done < n0;) {
    const int64_t n = std::min<int64_t>(n0 - done, 37 + done % 100);
    step(n);
    done += n;
  }
  for (int64_t i = 0; i < n_decode; ++i) step(1);
}

// Prefill n0 tokens in uneven chunks (queries = those tokens), then decode steps of one token each; returns
// the outputs of every attend call concatenated, and fills k, v with the whole history.
std::vector<float> run_cache(KvLayerCache& cache, const AttnCase& c, SplitMix64& rng, int64_t n0, int64_t n_decode,
                             std::vector<float>* k_all, std::vector<float>* v_all, std::vector<float>* q_all) {
  const int64_t row_kv = c.geo.n_kv_heads * c.geo.head_dim, row_q = c.geo.n_heads * c.geo.head_dim;
  std::vector<float> outs;
  int64_t pos = 0;
  auto step = [&](int64_t n) {
    const auto k = gaussian(rng, n * row_kv), v = gaussian(rng, n * row_kv), q = gaussian(rng, n * row_q);
    cache.append(k.data(), v.data(), n);
    std::vector<float> out(static_cast<size_t>(n * row_q));
    cache.attend(q.data(), n, pos, c.spec, out.data());
    k_all->insert(k_all->end(), k.begin(), k.end());
    v_all->insert(v_all->end(), v.begin(), v.end());
    q_all->insert(q_all->end(), q.begin(), q.end());
    outs.insert(outs.end(), out.begin(), out.end());
    pos += n;
  };
  for_each_step(n0, n_decode, step);
  return outs;
}

// The same queries through the reference, one attend call at a time as run_cache made them.
std::vector<float> run_reference(const AttnCase& c, int64_t n0, int64_t n_decode, const std::vector<float>& k,
                                 const std::vector<float>& v, const std::vector<float>& q) {
  const int64_t row_q = c.geo.n_heads * c.geo.head_dim;
  std::vector<float> outs;
  int64_t pos = 0;
  auto step = [&](int64_t n) {
    std::vector<float> qs(q.begin() + pos * row_q, q.begin() + (pos + n) * row_q);
    const auto out = reference(c, qs, n, pos, k, v, pos + n);
    outs.insert(outs.end(), out.begin(), out.end());
    pos += n;
  };
  for_each_step(n0, n_decode, step);
  return outs;
}

TEST(TurboQuantAttention, HotWindowCoveringEverythingEqualsReference) {
  for (const AttnCase& c : attn_cases()) {
    SCOPED_TRACE(c.name);
    for_each_isa([&] {
      TurboKvOptions opt;
      opt.hot_window = 1 << 20;
      TurboLayer cache_owner(c.geo, opt);
      KvLayerBlocked& cache = cache_owner.layer;
      SplitMix64 rng(11);
      std::vector<float> k, v, q;
      const int64_t n0 = 300, n_decode = 5;
      const auto got = run_cache(cache, c, rng, n0, n_decode, &k, &v, &q);
      EXPECT_EQ(cache.n_compressed(), 0);
      const auto want = run_reference(c, n0, n_decode, k, v, q);
      test::expect_close(got, want, 1e-5, "turbo cache (all hot) vs ref::attention");
    });
  }
}

// With everything packed, the fused kernels compute exactly attention over what the cache reconstructs
// (the codec's DeQuant, QJL term included): checks the decode tables, the blocked GEMMs, masking, the split
// merge and the rotations on every ISA path, for every mode.
TEST(TurboQuantAttention, FusedKernelsEqualAttentionOverTheReconstruction) {
  struct Mode {
    TurboKvOptions opt;
    const char* name;
  };
  std::vector<Mode> modes;
  auto add = [&](TurboKvOptions::Mode m, int kb, bool qjl, int vb, int64_t hot, const char* name) {
    modes.push_back({test::turbo_options(m, kb, qjl, vb, hot), name});
  };
  add(TurboKvOptions::Mode::turbo, 3, true, 3, 0, "turbo k3+qjl v3");
  add(TurboKvOptions::Mode::turbo, 3, true, 3, 70, "turbo k3+qjl v3, hot 70");
  add(TurboKvOptions::Mode::turbo, 4, false, 4, 0, "turbo k4 v4");
  add(TurboKvOptions::Mode::turbo, 5, false, 4, 0, "turbo k5 v4 (default)");
  add(TurboKvOptions::Mode::turbo, 5, true, 5, 40, "turbo k5+qjl v5, hot 40");
  add(TurboKvOptions::Mode::turbo, 2, true, 2, 0, "turbo k2+qjl v2");
  add(TurboKvOptions::Mode::affine4, 0, false, 0, 0, "affine4");
  add(TurboKvOptions::Mode::affine8, 0, false, 0, 30, "affine8, hot 30");
  add(TurboKvOptions::Mode::f16, 0, false, 0, 0, "f16");
  for (const AttnCase& c : attn_cases())
    for (const Mode& m : modes) {
      SCOPED_TRACE(std::string(c.name) + ", " + m.name);
      for_each_isa([&] {
        TurboLayer cache_owner(c.geo, m.opt);
        KvLayerBlocked& cache = cache_owner.layer;
        SplitMix64 rng(5);
        std::vector<float> k, v, q;
        const int64_t n0 = 260, n_decode = 3;
        const auto got = run_cache(cache, c, rng, n0, n_decode, &k, &v, &q);
        // Reconstructions at the end; positions packed during the run were packed before their last use
        // only if they left the window, which the last reconstruction reflects for every call when hot = 0.
        const int64_t n = n0 + n_decode, row = c.geo.n_kv_heads * c.geo.head_dim;
        std::vector<float> kh(static_cast<size_t>(n * row)), vh(kh.size());
        for (int64_t p = 0; p < n; ++p) cache.reconstruct(p, kh.data() + p * row, vh.data() + p * row);
        if (m.opt.hot_window == 0) {
          const auto want = run_reference(c, n0, n_decode, kh, vh, q);
          test::expect_close(got, want, 4e-5, "fused vs reference over the reconstruction");
        } else {
          // The last decode step saw exactly the final state.
          const int64_t row_q = c.geo.n_heads * c.geo.head_dim;
          std::vector<float> q_last(q.end() - row_q, q.end()), got_last(got.end() - row_q, got.end());
          const auto want = reference(c, q_last, 1, n - 1, kh, vh, n);
          test::expect_close(got_last, want, 4e-5, "last decode step vs reference over the reconstruction");
        }
      });
    }
}

double cosine(const float* a, const float* b, int64_t n) {
  return dot(a, b, n) / std::sqrt(dot(a, a, n) * dot(b, b, n));
}

// Every token compressed (hot window 0), random Gaussian data: the output stays close to exact attention, as
// close as the codebooks' distortions predict; the default 4-bit K + 4-bit V and the int4 / int8 baselines keep
// a cosine similarity > 0.99 (3-bit V cannot: one reconstructed vector alone has cosine sqrt(1 - D_3) = 0.983).
TEST(TurboQuantAttention, CompressedOutputCloseToReference) {
  struct Config {
    const char* name;
    TurboKvOptions::Mode mode;
    int k_bits;
    bool qjl;
    int v_bits;
  };
  const Config configs[] = {
      {"K3+QJL V3", TurboKvOptions::Mode::turbo, 3, true, 3},  {"K4 V3", TurboKvOptions::Mode::turbo, 4, false, 3},
      {"K4 V4", TurboKvOptions::Mode::turbo, 4, false, 4},     {"K5 V4", TurboKvOptions::Mode::turbo, 5, false, 4},
      {"affine4", TurboKvOptions::Mode::affine4, 0, false, 0},
      {"affine8", TurboKvOptions::Mode::affine8, 0, false, 0},  {"f16", TurboKvOptions::Mode::f16, 0, false, 0},
  };
  for (const AttnCase& c : attn_cases())
    for (const Config& cf : configs) {
      SCOPED_TRACE(std::string(c.name) + ", " + cf.name);
      const TurboKvOptions opt = test::turbo_options(cf.mode, cf.k_bits, cf.qjl, cf.v_bits, 0);
      TurboLayer cache_owner(c.geo, opt);
      KvLayerBlocked& cache = cache_owner.layer;
      SplitMix64 rng(77);
      std::vector<float> k, v, q;
      const int64_t n0 = 700, n_decode = 4;
      const auto got = run_cache(cache, c, rng, n0, n_decode, &k, &v, &q);
      const auto want = run_reference(c, n0, n_decode, k, v, q);
      const int64_t d = c.geo.head_dim, rows = static_cast<int64_t>(got.size()) / d;
      double sum = 0.0, worst = 1.0;
      for (int64_t r = 0; r < rows; ++r) {
        const double cs = cosine(got.data() + r * d, want.data() + r * d, d);
        sum += cs;
        worst = std::min(worst, cs);
      }
      const double overall = cosine(got.data(), want.data(), static_cast<int64_t>(got.size()));
      std::printf("[          ] %-28s %-10s cosine: overall %.5f, mean per row %.5f, worst row %.5f\n", c.name, cf.name,
                  overall, sum / rows, worst);
      if (cf.mode == TurboKvOptions::Mode::turbo) {
        // Expected: on random data the output error relative to the output is ~ sqrt(var_K + var_V), with
        // var_V = D_v / (1 - D_v) (the rescaled reconstruction's orthogonal error) and var_K the score error in
        // units of the score spread: D_k / (1 - D_k), or pi/2 D_k with QJL (Lemma 4's bound).
        const double dk = lloyd_max_codebook(cf.k_bits, 128).distortion * 128;
        const double dv = lloyd_max_codebook(cf.v_bits, 128).distortion * 128;
        const double var = (cf.qjl ? M_PI / 2 * dk : dk / (1 - dk)) + dv / (1 - dv);
        EXPECT_GT(overall, 1.0 / std::sqrt(1.0 + var) - 0.005) << "predicted " << 1.0 / std::sqrt(1.0 + var);
      }
      if (cf.mode == TurboKvOptions::Mode::turbo && cf.k_bits >= 4 && cf.v_bits == 4 && !cf.qjl) {
        EXPECT_GT(overall, 0.99) << "4-bit V, as the default";
        EXPECT_GT(sum / rows, 0.99) << "4-bit V, as the default";
      }
      if (cf.mode == TurboKvOptions::Mode::affine4) {
        EXPECT_GT(overall, 0.99);
      }
      if (cf.mode == TurboKvOptions::Mode::affine8) {
        EXPECT_GT(overall, 0.9999);
      }
      if (cf.mode == TurboKvOptions::Mode::f16) {
        EXPECT_GT(overall, 0.999999);  // fp16 rounding only
      }
    }
}

// truncate() below and inside the packed region, then new tokens: attention still equals attention over what
// the cache holds, and the positions past the cut are really gone.
TEST(TurboQuantKvLayer, TruncateThenAppend) {
  const AttnCase c{{8, 2, 128}, {1.0f / std::sqrt(128.0f), 0.0f, 0}, "gqa"};
  TurboKvOptions opt;
  opt.hot_window = 64;
  TurboLayer cache_owner(c.geo, opt);
  KvLayerBlocked& cache = cache_owner.layer;
  SplitMix64 rng(3);
  const int64_t row = c.geo.n_kv_heads * c.geo.head_dim, row_q = c.geo.n_heads * c.geo.head_dim;
  const auto k = gaussian(rng, 400 * row), v = gaussian(rng, 400 * row);
  cache.append(k.data(), v.data(), 400);
  for (int64_t cut : {380, 200, 10}) {
    SCOPED_TRACE("cut " + std::to_string(cut));
    const uint64_t before = cache.bytes();
    cache.truncate(cut);
    EXPECT_EQ(cache.n_tokens(), cut);
    EXPECT_LE(cache.bytes(), before);
    const auto k2 = gaussian(rng, 150 * row), v2 = gaussian(rng, 150 * row);
    cache.append(k2.data(), v2.data(), 150);
    const int64_t n = cut + 150;
    std::vector<float> kh(static_cast<size_t>(n * row)), vh(kh.size());
    for (int64_t p = 0; p < n; ++p) cache.reconstruct(p, kh.data() + p * row, vh.data() + p * row);
    // The appended rows are the new ones (hot ones exactly).
    for (int64_t p = std::max(cache.n_compressed(), cut); p < n; ++p)
      for (int64_t i = 0; i < row; ++i) ASSERT_NEAR(kh[p * row + i], k2[(p - cut) * row + i], 1e-5);
    const auto q = gaussian(rng, 3 * row_q);
    std::vector<float> got(static_cast<size_t>(3 * row_q));
    cache.attend(q.data(), 3, n - 3, c.spec, got.data());
    test::expect_close(got, reference(c, q, 3, n - 3, kh, vh, n), 4e-5, "attend after truncate");
  }
}

TEST(TurboQuantKvLayer, RejectsUnsupportedOptions) {
  TurboKvOptions opt;
  opt.k_bits = 6;
  EXPECT_THROW(turbo_kv_layer_spec({8, 2, 128}, opt), Error);
  opt = {};
  opt.v_bits = 1;
  EXPECT_THROW(turbo_kv_layer_spec({8, 2, 128}, opt), Error);
  opt = {};
  opt.hot_window = -1;
  EXPECT_THROW(turbo_kv_layer_spec({8, 2, 128}, opt), Error);
  EXPECT_THROW(turbo_kv_layer_spec({8, 2, 40}, TurboKvOptions{}), Error);
  EXPECT_THROW(turbo_kv_layer_spec({8, 3, 128}, TurboKvOptions{}), Error);
}

}  // namespace
}  // namespace lmlab
