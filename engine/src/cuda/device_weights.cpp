// Upload of the host model's weights to the GPU in their stored format (see the header).
#include "cuda/device_weights.h"

#include <fmt/format.h>

#include "cuda/cuda_check.h"
#include "lmlab/error.h"
#include "lmlab/options.h"

namespace lmlab::cuda {

namespace {

uint64_t scale_size(kernels::ScaleType t) { return t == kernels::ScaleType::f32 ? 4 : 2; }
uint64_t elem_size(kernels::WeightType t) { return t == kernels::WeightType::f32 ? 4 : 2; }

void copy_to(void* dst, const void* src, uint64_t bytes) {
  check(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice), "weight upload");
}

DeviceBuffer upload_floats(DeviceAllocator& a, const std::vector<float>& v, const std::string& what) {
  if (v.empty()) return {};
  DeviceBuffer b(a, v.size() * sizeof(float), what);
  copy_to(b.get(), v.data(), v.size() * sizeof(float));
  return b;
}

// One Linear, or several with the same format stacked (MoE experts: slice e of each buffer is expert e).
DeviceLinear upload_stacked(DeviceAllocator& a, const std::vector<const Linear*>& lins, const std::string& what) {
  const Linear& first = *lins.front();
  const StoredWeight s0 = first.stored();
  const uint64_t E = lins.size();
  DeviceLinear d;
  auto& w = d.w;
  w.rows = first.out_features();
  w.cols = first.in_features();
  w.affine = s0.affine;
  w.type = s0.type;
  uint64_t wb = 0, sb = 0;
  if (s0.affine) {
    wb = static_cast<uint64_t>(s0.quant.rows * s0.quant.words_per_row()) * 4;
    sb = static_cast<uint64_t>(s0.quant.rows * s0.quant.groups_per_row()) * scale_size(s0.quant.scale_type);
  } else {
    wb = static_cast<uint64_t>(w.rows * w.cols) * elem_size(s0.type);
  }
  DeviceBuffer bw(a, wb * E, what), bs, bb, bbias;
  if (s0.affine) bs = DeviceBuffer(a, sb * E, what + " scales"), bb = DeviceBuffer(a, sb * E, what + " biases");
  const bool has_bias = s0.bias && !s0.bias->empty();
  if (has_bias) bbias = DeviceBuffer(a, E * w.rows * sizeof(float), what + " bias");
  for (uint64_t e = 0; e < E; ++e) {
    const StoredWeight s = lins[e]->stored();
    if (s.affine != s0.affine || s.type != s0.type ||
        (s.affine && (s.quant.bits != s0.quant.bits || s.quant.group_size != s0.quant.group_size ||
                      s.quant.scale_type != s0.quant.scale_type)) ||
        lins[e]->out_features() != w.rows || lins[e]->in_features() != w.cols ||
        (s.bias && !s.bias->empty()) != has_bias)
      throw Error(ErrorKind::unsupported, what, fmt::format("expert {} is stored unlike expert 0", e));
    if (s.affine) {
      copy_to(bw.get<uint8_t>() + e * wb, s.quant.packed, wb);
      copy_to(bs.get<uint8_t>() + e * sb, s.quant.scales, sb);
      copy_to(bb.get<uint8_t>() + e * sb, s.quant.biases, sb);
    } else {
      copy_to(bw.get<uint8_t>() + e * wb, s.dense, wb);
    }
    if (has_bias) copy_to(bbias.get<float>() + e * w.rows, s.bias->data(), w.rows * sizeof(float));
  }
  if (s0.affine) {
    w.quant = s0.quant;
    w.quant.packed = bw.get<uint32_t>();
    w.quant.scales = bs.get();
    w.quant.biases = bb.get();
    w.stride_s = sb;
  } else {
    w.dense = bw.get();
  }
  w.stride_w = wb;
  w.bias = has_bias ? bbias.get<float>() : nullptr;
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

DeviceWeights DeviceWeights::upload(DeviceAllocator& a, const Transformer& t, int64_t n_layers) {
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
      if (w.moe.experts.empty())
        throw Error(ErrorKind::unsupported, std::string(option_flag("stream_experts")),
                    "streamed experts are not on the GPU yet (issue 11)");
      dl.router = cuda::upload(a, *w.moe.router, p + "router");
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
