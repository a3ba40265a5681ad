// The device constants of a compressed KV layer spec (see device_tq_codec.h).
#include "cuda/device_tq_codec.h"

#include <string>
#include <vector>

#include "cuda/cuda_check.h"
#include "kv/turboquant/tq_codec.h"
#include "kv/turboquant/wht.h"
#include "lmlab/error.h"
#include "lmlab/options.h"
#include "util/half.h"

namespace lmlab::cuda {

using turboquant::TqCodec;
using turboquant::TqScheme;

namespace {

const TqCodec& tq_codec(const KvCodec* c) {
  const auto* tq = dynamic_cast<const TqCodec*>(c);
  if (!tq)
    throw Error(ErrorKind::internal, "cuda kv", "device KV layers store kv/turboquant records (f16, TurboQuant, affine)");
  return *tq;
}

// The codec's shape; the constants' pointers are set by the caller.
kernels::cuda::TqDeviceCodec shape(const TqCodec& c) {
  const turboquant::TqFormat& f = c.format();
  kernels::cuda::TqDeviceCodec d;
  d.scheme = f.scheme == TqScheme::affine ? kernels::cuda::kTqAffine : kernels::cuda::kTqLloydMax;
  d.bits = f.bits;
  d.qjl = f.qjl ? 1 : 0;
  d.group_dim = static_cast<int>(f.group_dim);
  d.n_groups = static_cast<int>(f.n_groups);
  d.code_bytes = static_cast<int>(f.code_bytes());
  d.scalar_offset = static_cast<int>(f.scalar_offset());
  d.group_bytes = static_cast<int>(f.group_bytes());
  d.record_bytes = static_cast<int>(f.record_bytes());
  return d;
}

}  // namespace

std::unique_ptr<DeviceTqCodec> DeviceTqCodec::make(DeviceAllocator& alloc, const KvLayerSpec& spec) {
  const TqCodec& k = tq_codec(spec.k_codec.get());
  const TqCodec& v = tq_codec(spec.v_codec.get());
  if (spec.hot_window > 0)
    throw Error(ErrorKind::unsupported, std::string(option_flag("kv_hot_window")),
                "a hot window (exact f32 rows of the newest positions) is not on the GPU: use 0 with --device cuda");
  if (k.format().scheme == TqScheme::f16 && v.format().scheme == TqScheme::f16 && !spec.rotation) return nullptr;
  if (k.format().scheme == TqScheme::f16 || v.format().scheme == TqScheme::f16)
    throw Error(ErrorKind::internal, "cuda kv", "f16 records mixed with compressed ones");
  return std::unique_ptr<DeviceTqCodec>(new DeviceTqCodec(alloc, spec));
}

DeviceTqCodec::DeviceTqCodec(DeviceAllocator& alloc, const KvLayerSpec& spec) {
  const TqCodec& k = tq_codec(spec.k_codec.get());
  const TqCodec& v = tq_codec(spec.v_codec.get());
  const int64_t d = spec.geo.head_dim;
  k_ = shape(k);
  v_ = shape(v);
  const int64_t g = k.format().group_dim;
  // Host image of the constants: codebooks padded to 32 entries, then the rotation's signs, then S.
  std::vector<float> h(4 * 32, 0.0f);
  auto put_codebook = [&](const TqCodec& c, size_t at) {
    if (!c.codebook()) return;
    // The tensor-core decode (tq_decode_mma.cu) takes codebook values (times a power of two) as exact f16 operands.
    for (const float x : c.codebook()->centroids)
      if (f16_to_f32(f32_to_f16(x)) != x)
        throw Error(ErrorKind::internal, "cuda kv", "TurboQuant codebook values must be f16 values");
    std::copy(c.codebook()->centroids.begin(), c.codebook()->centroids.end(), h.begin() + at);
    std::copy(c.codebook()->boundaries.begin(), c.codebook()->boundaries.end(), h.begin() + at + 32);
  };
  put_codebook(k, 0);
  put_codebook(v, 64);
  size_t rot_at = 0, qjl_at = 0;
  if (spec.rotation) {
    const auto* rot = dynamic_cast<const turboquant::HeadRotation*>(spec.rotation.get());
    if (!rot || rot->group_dim() != g || rot->head_dim() != d)
      throw Error(ErrorKind::internal, "cuda kv", "device KV layers rotate with kv/turboquant's HeadRotation");
    rot_at = h.size();
    for (int64_t gi = 0; gi < rot->n_groups(); ++gi) h.insert(h.end(), rot->group(gi).d1().begin(), rot->group(gi).d1().end());
    for (int64_t gi = 0; gi < rot->n_groups(); ++gi) h.insert(h.end(), rot->group(gi).d2().begin(), rot->group(gi).d2().end());
    inv_sqrt_ = rot->group(0).inv_sqrt();
  }
  if (k.projection()) {
    qjl_at = h.size();
    h.insert(h.end(), k.projection()->matrix(), k.projection()->matrix() + g * g);
  }
  if (v.projection()) throw Error(ErrorKind::internal, "cuda kv", "QJL is for keys only");
  consts_ = DeviceBuffer(alloc, h.size() * sizeof(float), "TurboQuant constants");
  check(cudaMemcpy(consts_.get(), h.data(), h.size() * sizeof(float), cudaMemcpyHostToDevice), "TurboQuant constants");
  const float* base = consts_.get<float>();
  if (k.codebook()) k_.centroids = base, k_.boundaries = base + 32;
  if (v.codebook()) v_.centroids = base + 64, v_.boundaries = base + 96;
  if (spec.rotation) d1_ = base + rot_at, d2_ = base + rot_at + d;
  if (k.projection()) k_.qjl_matrix = base + qjl_at;
}

kernels::cuda::TqKvBlocks DeviceTqCodec::blocks(uint8_t* const* blocks, int64_t block_tokens, int64_t n_kv_heads,
                                                int64_t head_dim) const {
  kernels::cuda::TqKvBlocks b{blocks, block_tokens, n_kv_heads, head_dim, k_, v_};
  b.rot_d1 = d1_;
  b.rot_d2 = d2_;
  b.rot_inv_sqrt = inv_sqrt_;
  return b;
}

}  // namespace lmlab::cuda
