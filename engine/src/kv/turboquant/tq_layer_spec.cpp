// The compressed modes' KV layer specs (see tq_layer_spec.h).
#include "kv/turboquant/tq_layer_spec.h"

#include <string>

#include "kv/turboquant/rng.h"
#include "kv/turboquant/tq_codec.h"
#include "kv/turboquant/wht.h"
#include "lmlab/error.h"
#include "lmlab/options.h"

namespace lmlab {

using turboquant::TqFormat;

namespace {

const KvGeometry& checked(const KvGeometry& g) {
  if (g.n_heads <= 0 || g.n_kv_heads <= 0 || g.head_dim <= 0 || g.n_heads % g.n_kv_heads != 0)
    throw Error(ErrorKind::invalid_input, std::string(engine_option("kv_mode").flag),
                "bad KV geometry: " + std::to_string(g.n_heads) + " heads, " + std::to_string(g.n_kv_heads) +
                    " KV heads, head_dim " + std::to_string(g.head_dim));
  return g;
}

TqFormat k_format(const KvGeometry& g, const TurboKvOptions& o) {
  switch (o.mode) {
    case TurboKvOptions::Mode::affine4: return turboquant::make_affine_format(g.head_dim, 4);
    case TurboKvOptions::Mode::affine8: return turboquant::make_affine_format(g.head_dim, 8);
    case TurboKvOptions::Mode::f16: return turboquant::make_f16_format(g.head_dim);
    case TurboKvOptions::Mode::turbo: break;
  }
  return turboquant::make_lloyd_max_format(g.head_dim, o.k_bits, o.k_qjl);
}

TqFormat v_format(const KvGeometry& g, const TurboKvOptions& o) {
  switch (o.mode) {
    case TurboKvOptions::Mode::affine4: return turboquant::make_affine_format(g.head_dim, 4);
    case TurboKvOptions::Mode::affine8: return turboquant::make_affine_format(g.head_dim, 8);
    case TurboKvOptions::Mode::f16: return turboquant::make_f16_format(g.head_dim);
    case TurboKvOptions::Mode::turbo: break;
  }
  return turboquant::make_lloyd_max_format(g.head_dim, o.v_bits, false);
}

}  // namespace

KvLayerSpec turbo_kv_layer_spec(const KvGeometry& geometry, const TurboKvOptions& options) {
  if (options.hot_window < 0)
    throw Error(ErrorKind::invalid_input, "--turbo-kv hot window",
                "must be >= 0, got " + std::to_string(options.hot_window));
  KvLayerSpec s;
  s.geo = checked(geometry);
  s.k_codec = std::make_shared<turboquant::TqCodec>(k_format(geometry, options), turboquant::derive_seed(options.seed, 1));
  s.v_codec = std::make_shared<turboquant::TqCodec>(v_format(geometry, options), turboquant::derive_seed(options.seed, 2));
  if (options.mode == TurboKvOptions::Mode::turbo)
    s.rotation = std::make_shared<turboquant::HeadRotation>(geometry.head_dim, turboquant::derive_seed(options.seed, 0));
  s.hot_window = options.hot_window;
  return s;
}

uint64_t turbo_kv_packed_bytes_per_token(const KvGeometry& geometry, const TurboKvOptions& options) {
  checked(geometry);
  return static_cast<uint64_t>(
      geometry.n_kv_heads * (k_format(geometry, options).record_bytes() + v_format(geometry, options).record_bytes()));
}

}  // namespace lmlab
