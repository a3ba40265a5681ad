// Upload of the host model's weights to the GPU in their stored format (see the header).
#include "cuda/device_weights.h"

#include <fmt/format.h>

#include "cuda/cuda_check.h"
#include "cuda/device_expert_cache.h"
#include "lmlab/error.h"

namespace lmlab::cuda {

namespace {

uint64_t scale_size(kernels::ScaleType t) { return t == kernels::ScaleType::f32 ? 4 : 2; }
uint64_t elem_size(kernels::WeightType t) { return t == kernels::WeightType::f32 ? 4 : 2; }

void copy_to(void* dst, const void* src, uint64_t bytes, cudaStream_t stream) {
  if (stream) check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream), "weight upload");
  else check(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice), "weight upload");
}

DeviceBuffer upload_floats(DeviceAllocator& a, const std::vector<float>& v, const std::string& what) {
  if (v.empty()) return {};
  DeviceBuffer b(a, v.size() * sizeof(float), what);
  copy_to(b.get(), v.data(), v.size() * sizeof(float), nullptr);
  return b;
}

// One Linear, or several with the same format stacked (MoE experts: slice e of each buffer is expert e).
DeviceLinear upload_stacked(DeviceAllocator& a, const std::vector<const Linear*>& lins, const std::string& what) {
  const StoredFormat f = stored_format(*lins.front());
  const uint64_t E = lins.size(), wb = f.weight_bytes, sb = f.scale_bytes;
  DeviceLinear d;
  auto& w = d.w;
  w = f.w;
  DeviceBuffer bw(a, wb * E, what), bs, bb, bbias;
  if (f.w.affine) bs = DeviceBuffer(a, sb * E, what + " scales"), bb = DeviceBuffer(a, sb * E, what + " biases");
  if (f.has_bias) bbias = DeviceBuffer(a, E * w.rows * sizeof(float), what + " bias");
  for (uint64_t e = 0; e < E; ++e) {
    if (!same_stored_format(stored_format(*lins[e]), f))
      throw Error(ErrorKind::unsupported, what, fmt::format("expert {} is stored unlike expert 0", e));
    copy_stored(*lins[e], f, bw.get<uint8_t>() + e * wb, f.w.affine ? bs.get<uint8_t>() + e * sb : nullptr,
                f.w.affine ? bb.get<uint8_t>() + e * sb : nullptr, f.has_bias ? bbias.get<float>() + e * w.rows : nullptr,
                nullptr);
  }
  if (f.w.affine) {
    w.quant.packed = bw.get<uint32_t>();
    w.quant.scales = bs.get();
    w.quant.biases = bb.get();
    w.stride_s = sb;
  } else {
    w.dense = bw.get();
  }
  w.stride_w = wb;
  w.bias = f.has_bias ? bbias.get<float>() : nullptr;
  d.buffers.push_back(std::move(bw));
  d.buffers.push_back(std::move(bs));
  d.buffers.push_back(std::move(bb));
  d.buffers.push_back(std::move(bbias));
  return d;
}

DeviceLinear upload(DeviceAllocator& a, const Linear& l, const std::string& what) {
  return upload_stacked(a, {&l}, what);
}

}  // namespace

StoredFormat stored_format(const Linear& l) {
  const StoredWeight s = l.stored();
  StoredFormat f;
  auto& w = f.w;
  w.rows = l.out_features();
  w.cols = l.in_features();
  w.affine = s.affine;
  w.type = s.type;
  if (s.affine) {
    w.quant = s.quant;
    w.quant.packed = nullptr, w.quant.scales = nullptr, w.quant.biases = nullptr;
    f.weight_bytes = static_cast<uint64_t>(s.quant.rows * s.quant.words_per_row()) * 4;
    f.scale_bytes = static_cast<uint64_t>(s.quant.rows * s.quant.groups_per_row()) * scale_size(s.quant.scale_type);
  } else {
    f.weight_bytes = static_cast<uint64_t>(w.rows * w.cols) * elem_size(s.type);
  }
  f.has_bias = s.bias && !s.bias->empty();
  return f;
}

bool same_stored_format(const StoredFormat& a, const StoredFormat& b) {
  const auto &x = a.w, &y = b.w;
  if (x.affine != y.affine || x.type != y.type || x.rows != y.rows || x.cols != y.cols || a.has_bias != b.has_bias)
    return false;
  return !x.affine || (x.quant.bits == y.quant.bits && x.quant.group_size == y.quant.group_size &&
                       x.quant.scale_type == y.quant.scale_type);
}

void copy_stored(const Linear& l, const StoredFormat& f, void* weight, void* scales, void* biases, float* bias,
                 cudaStream_t stream) {
  const StoredWeight s = l.stored();
  if (s.affine) {
    copy_to(weight, s.quant.packed, f.weight_bytes, stream);
    copy_to(scales, s.quant.scales, f.scale_bytes, stream);
    copy_to(biases, s.quant.biases, f.scale_bytes, stream);
  } else {
    copy_to(weight, s.dense, f.weight_bytes, stream);
  }
  if (f.has_bias) copy_to(bias, s.bias->data(), f.w.rows * sizeof(float), stream);
}

DeviceWeights DeviceWeights::upload(DeviceAllocator& a, const Transformer& t, int64_t n_layers,
                                    const DeviceExpertCache* streamed) {
  const ModelSpec& s = t.spec();
  DeviceWeights d;
  d.embed = cuda::upload(a, t.embed_weight(), "embed_tokens");
  if (&t.lm_head_weight() == &t.embed_weight()) d.lm_head.w = d.embed.w;
  else d.lm_head = cuda::upload(a, t.lm_head_weight(), "lm_head");
  d.final_norm = upload_floats(a, t.final_norm(), "final norm");
  for (const RopeSpec& r : s.ropes) d.inv_freq.push_back(upload_floats(a, r.inv_freq, "rope inv_freq"));
  for (int64_t l = 0; l < n_layers; ++l) {
    const LayerWeights& w = t.layer_weights()[l];
    const std::string p = fmt::format("layer {} ", l);
    DeviceLayer dl;
    dl.attn_norm = upload_floats(a, w.attn_norm, p + "norm");
    dl.post_attn_norm = upload_floats(a, w.post_attn_norm, p + "norm");
    dl.ffn_norm = upload_floats(a, w.ffn_norm, p + "norm");
    dl.post_ffn_norm = upload_floats(a, w.post_ffn_norm, p + "norm");
    dl.q_norm = upload_floats(a, w.q_norm, p + "norm");
    dl.k_norm = upload_floats(a, w.k_norm, p + "norm");
    dl.q = cuda::upload(a, *w.q, p + "q_proj");
    dl.k = cuda::upload(a, *w.k, p + "k_proj");
    dl.v = cuda::upload(a, *w.v, p + "v_proj");
    dl.o = cuda::upload(a, *w.o, p + "o_proj");
    if (s.layers[l].moe) {
      dl.router = cuda::upload(a, *w.moe.router, p + "router");
      if (streamed) {  // the routed experts stay on the drive; the layer's kernels read the cache's slots
        const DeviceExpertWeights& ew = streamed->layer_weights(static_cast<int32_t>(l));
        dl.gate.w = ew.gate, dl.up.w = ew.up, dl.down.w = ew.down;
        d.layers.push_back(std::move(dl));
        continue;
      }
      if (w.moe.experts.empty())
        throw Error(ErrorKind::internal, p + "experts", "the host model holds no experts to upload");
      std::vector<const Linear*> g, u, dn;
      for (const auto& e : w.moe.experts) g.push_back(e.gate.get()), u.push_back(e.up.get()), dn.push_back(e.down.get());
      dl.gate = upload_stacked(a, g, p + "experts gate_proj");
      dl.up = upload_stacked(a, u, p + "experts up_proj");
      dl.down = upload_stacked(a, dn, p + "experts down_proj");
    } else {
      dl.gate = cuda::upload(a, *w.mlp.gate, p + "gate_proj");
      dl.up = cuda::upload(a, *w.mlp.up, p + "up_proj");
      dl.down = cuda::upload(a, *w.mlp.down, p + "down_proj");
    }
    d.layers.push_back(std::move(dl));
  }
  return d;
}

}  // namespace lmlab::cuda
