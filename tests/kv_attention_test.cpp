// The blocked attention (engine/src/kv/attention/) on every codec and instruction-set path against its plain
// reference (blocked_attention_ref.cpp) over odd shapes: GQA ratios 1-8 and MQA, sliding windows, softcap, one
// and many queries, histories that end mid-block and mid-tile, a hot window, head_dim not a multiple of 16. The
// f32 codec is also held to kernels/ref/attention.cpp on the raw K and V.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "kernels/kernels.h"
#include "kv/kv_layer_blocked.h"
#include "kv/turboquant/tq_layer_spec.h"
#include "kv_test_helpers.h"
#include "tolerance.h"

namespace lmlab {
namespace {

using turboquant::SplitMix64;

using test::for_each_isa;
using test::gaussian;

struct Shape {
  KvGeometry geo;
  AttentionSpec spec;
  int64_t n_ctx, n_q;  // history length (the queries' own tokens included) and queries at its end
  const char* name;
};

std::vector<Shape> shapes() {
  return {
      {{4, 4, 64}, {0.125f, 0.0f, 0}, 77, 1, "mha d64, decode"},
      {{4, 2, 64}, {0.125f, 0.0f, 0}, 301, 37, "gqa2 d64, 37 queries"},
      {{6, 2, 32}, {0.2f, 0.0f, 0}, 130, 5, "gqa3 d32"},
      {{8, 2, 128}, {0.09f, 0.0f, 40}, 263, 9, "gqa4 d128 window 40"},
      {{16, 2, 64}, {0.125f, 30.0f, 0}, 95, 3, "gqa8 d64 softcap 30"},
      {{8, 1, 256}, {0.0625f, 0.0f, 0}, 200, 1, "mqa d256"},
      {{4, 2, 32}, {0.2f, 5.0f, 20}, 170, 50, "gqa2 d32 softcap 5 window 20"},
  };
}

struct Codec {
  std::string name;
  bool f32;
  TurboKvOptions opt;
};

std::vector<Codec> codecs() {
  std::vector<Codec> c;
  c.push_back({"f32", true, {}});
  auto add = [&](const char* name, TurboKvOptions::Mode m, int kb, bool qjl, int vb, int64_t hot) {
    c.push_back({name, false, test::turbo_options(m, kb, qjl, vb, hot)});
  };
  add("turbo k5 v4", TurboKvOptions::Mode::turbo, 5, false, 4, 0);
  add("turbo k3+qjl v3, hot 23", TurboKvOptions::Mode::turbo, 3, true, 3, 23);
  add("affine4", TurboKvOptions::Mode::affine4, 0, false, 0, 0);
  add("affine8", TurboKvOptions::Mode::affine8, 0, false, 0, 0);
  add("f16", TurboKvOptions::Mode::f16, 0, false, 0, 0);
  return c;
}

// The attention's longest reduction: scores over a row, then values over the history.
double tol(const Shape& s) { return test::tolerance(kernels::WeightType::f32, s.n_ctx * 2 * s.geo.head_dim); }

TEST(KvAttention, EveryIsaAndCodecMatchesTheReference) {
  for (const Shape& s : shapes())
    for (const Codec& c : codecs()) {
      SCOPED_TRACE(std::string(s.name) + ", " + c.name);
      KvBlockPool pool(16);  // blocks of 16 positions: histories end mid-block and split over several
      KvLayerBlocked layer(pool, c.f32 ? f32_kv_layer_spec(s.geo, 0) : turbo_kv_layer_spec(s.geo, c.opt));
      SplitMix64 rng(9);
      const int64_t row = s.geo.n_kv_heads * s.geo.head_dim, row_q = s.geo.n_heads * s.geo.head_dim;
      const auto k = gaussian(rng, s.n_ctx * row), v = gaussian(rng, s.n_ctx * row), q = gaussian(rng, s.n_q * row_q);
      // Two appends, so the hot window has both records and rows.
      const int64_t first = s.n_ctx / 3;
      layer.append(k.data(), v.data(), first);
      layer.append(k.data() + first * row, v.data() + first * row, s.n_ctx - first);
      const int64_t q_pos0 = s.n_ctx - s.n_q;
      std::vector<float> want(static_cast<size_t>(s.n_q * row_q)), got(want.size());
      layer.attend_reference(q.data(), s.n_q, q_pos0, s.spec, want.data());
      if (c.f32) {
        std::vector<float> raw(want.size());
        kernels::ref::attention({q.data(), k.data(), v.data(), raw.data(), s.n_q, s.n_ctx, s.geo.n_heads,
                                 s.geo.n_kv_heads, s.geo.head_dim, q_pos0, 0, s.spec.scale, s.spec.softcap,
                                 s.spec.window});
        test::expect_close(want, raw, tol(s), "blocked reference vs kernels::ref::attention");
      }
      for_each_isa([&] {
        layer.attend(q.data(), s.n_q, q_pos0, s.spec, got.data());
        test::expect_close(got, want, tol(s), "blocked_attend vs blocked_attend_ref");
      });
    }
}

// head_dim 24: f32 records are read through zero-padded score rows (the tile kernels work in 16 floats).
TEST(KvAttention, F32HeadDimNotAMultipleOf16) {
  const Shape s{{6, 2, 24}, {0.2f, 0.0f, 0}, 90, 4, "gqa3 d24"};
  KvBlockPool pool(16);
  KvLayerBlocked layer(pool, f32_kv_layer_spec(s.geo, 0));
  SplitMix64 rng(4);
  const int64_t row = s.geo.n_kv_heads * s.geo.head_dim, row_q = s.geo.n_heads * s.geo.head_dim;
  const auto k = gaussian(rng, s.n_ctx * row), v = gaussian(rng, s.n_ctx * row), q = gaussian(rng, s.n_q * row_q);
  layer.append(k.data(), v.data(), s.n_ctx);
  std::vector<float> want(static_cast<size_t>(s.n_q * row_q)), got(want.size());
  kernels::ref::attention({q.data(), k.data(), v.data(), want.data(), s.n_q, s.n_ctx, s.geo.n_heads, s.geo.n_kv_heads,
                           s.geo.head_dim, s.n_ctx - s.n_q, 0, s.spec.scale, s.spec.softcap, s.spec.window});
  for_each_isa([&] {
    layer.attend(q.data(), s.n_q, s.n_ctx - s.n_q, s.spec, got.data());
    test::expect_close(got, want, tol(s), "d24 f32 layer vs kernels::ref::attention");
  });
}

}  // namespace
}  // namespace lmlab
