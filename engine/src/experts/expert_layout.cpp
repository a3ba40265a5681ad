// ExpertLayout: expert byte ranges from the safetensors headers, and their aligned read plans.
#include "experts/expert_layout.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <map>

#include "lmlab/error.h"

namespace lmlab {

namespace {

uint64_t align_down(uint64_t v, uint64_t a) { return v & ~(a - 1); }
uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) & ~(a - 1); }

std::string tensor_where(const TensorRef& r) { return r.file->path().string() + ": tensor '" + r.info->name + "'"; }

struct Locator {
  const WeightStore& store;
  const ModelSpec& spec;
  std::map<const SafetensorsFile*, int> file_index;

  // Adds `name` (an expert's tensor, or the stacked tensor when `expert` >= 0) to loc; returns false when the
  // tensor is absent and optional.
  bool add(ExpertLocation& loc, const std::string& name, ExpertProj proj, ExpertTensorRole role,
           std::vector<int64_t> want_shape, bool optional, int64_t stacked_expert) {
    TensorRef r = store.find(name);
    if (!r) {
      if (optional) return false;
      throw Error(ErrorKind::model_format, store.dir().string(), fmt::format("missing expert tensor '{}'", name));
    }
    std::vector<int64_t> shape = r.info->shape;
    uint64_t offset = r.info->offset, nbytes = r.info->nbytes;
    if (stacked_expert >= 0) {
      if (shape.empty() || shape[0] != spec.n_experts)
        throw Error(ErrorKind::model_format, tensor_where(r),
                    fmt::format("stacked expert tensor of shape [{}] should have a leading axis of {} experts",
                                fmt::join(shape, ", "), spec.n_experts));
      shape.erase(shape.begin());
      nbytes /= static_cast<uint64_t>(spec.n_experts);
      offset += static_cast<uint64_t>(stacked_expert) * nbytes;
    }
    if (shape != want_shape)
      throw Error(ErrorKind::model_format, tensor_where(r),
                  fmt::format("shape [{}] per expert but the config implies [{}]", fmt::join(shape, ", "),
                              fmt::join(want_shape, ", ")));
    ExpertTensor t;
    t.name = name;
    t.proj = proj;
    t.role = role;
    t.dtype = r.info->dtype;
    t.shape = std::move(shape);
    t.file = file_index.at(r.file);
    t.offset = offset;
    t.nbytes = nbytes;
    loc.tensors.push_back(std::move(t));
    return true;
  }

  // One projection: "<prefix>.weight" (+ scales/biases when quantized, + bias when present).
  void add_proj(ExpertLocation& loc, const std::string& prefix, ExpertProj proj, int64_t out, int64_t in,
                int64_t stacked_expert) {
    const int p = static_cast<int>(proj);
    const QuantSpec q = spec.quant_for(prefix);
    loc.out[p] = out;
    loc.in[p] = in;
    TensorRef w = store.find(prefix + ".weight");
    // mlx-lm's rule, as load_linear's: a tensor of a quantized model is quantized when it has scales.
    const bool quantized = (w && w.info->dtype == DType::u32) || (q.bits > 0 && store.contains(prefix + ".scales"));
    loc.quant[p] = quantized ? q : QuantSpec{};
    if (quantized) {
      if (q.bits <= 0 || q.group_size <= 0 || (in * q.bits) % 32 != 0 || in % q.group_size != 0) {
        const std::string where = w ? tensor_where(w) : prefix + ".weight";
        throw Error(ErrorKind::model_format, where,
                    fmt::format("quantized weight without a usable quantization spec (bits {}, group size {}) "
                                "for in_features {} in config.json",
                                q.bits, q.group_size, in));
      }
      add(loc, prefix + ".weight", proj, ExpertTensorRole::weight, {out, in * q.bits / 32}, false, stacked_expert);
      add(loc, prefix + ".scales", proj, ExpertTensorRole::scales, {out, in / q.group_size}, false, stacked_expert);
      add(loc, prefix + ".biases", proj, ExpertTensorRole::biases, {out, in / q.group_size}, false, stacked_expert);
    } else {
      add(loc, prefix + ".weight", proj, ExpertTensorRole::weight, {out, in}, false, stacked_expert);
    }
    add(loc, prefix + ".bias", proj, ExpertTensorRole::bias, {out}, true, stacked_expert);
  }
};

}  // namespace

const ExpertTensor* ExpertLocation::find(ExpertProj p, ExpertTensorRole r) const {
  for (const auto& t : tensors)
    if (t.proj == p && t.role == r) return &t;
  return nullptr;
}

void plan_expert_reads(ExpertLocation& loc, const std::vector<uint64_t>& file_bytes, uint64_t alignment) {
  struct Range {
    int file;
    uint64_t begin, end;
  };
  std::vector<Range> ranges;
  for (const auto& t : loc.tensors) ranges.push_back({t.file, t.offset, t.offset + t.nbytes});
  std::sort(ranges.begin(), ranges.end(),
            [](const Range& a, const Range& b) { return a.file != b.file ? a.file < b.file : a.begin < b.begin; });
  // Widen each range to its aligned extent and merge extents that touch or overlap (this also merges the
  // byte-adjacent ranges, whose extents always touch).
  loc.reads.clear();
  uint64_t min_end = 0;  // unaligned end of the current read's last range
  for (const Range& r : ranges) {
    const uint64_t a_begin = align_down(r.begin, alignment), a_end = align_up(r.end, alignment);
    if (!loc.reads.empty()) {
      ExpertRead& cur = loc.reads.back();
      if (cur.file == r.file && a_begin <= cur.offset + cur.nbytes) {
        cur.nbytes = std::max(cur.offset + cur.nbytes, a_end) - cur.offset;
        min_end = std::max(min_end, r.end);
        cur.min_bytes = min_end - cur.offset;
        continue;
      }
    }
    loc.reads.push_back({r.file, a_begin, a_end - a_begin, r.end - a_begin, 0});
    min_end = r.end;
  }
  // Lay the reads out back to back in one buffer; a read never extends past the file's aligned end.
  uint64_t pos = 0;
  loc.read_bytes = 0;
  for (auto& rd : loc.reads) {
    const uint64_t file_end = align_up(file_bytes.at(rd.file), alignment);
    rd.nbytes = std::min(rd.nbytes, file_end - rd.offset);
    rd.buffer_offset = pos;
    pos += rd.nbytes;
    loc.read_bytes += rd.nbytes;
  }
  loc.buffer_bytes = pos;
  for (auto& t : loc.tensors)
    for (const auto& rd : loc.reads)
      if (rd.file == t.file && t.offset >= rd.offset && t.offset + t.nbytes <= rd.offset + rd.nbytes) {
        t.buffer_offset = rd.buffer_offset + (t.offset - rd.offset);
        break;
      }
}

ExpertLayout ExpertLayout::build(const WeightStore& store, const ModelSpec& spec, uint64_t alignment) {
  if (alignment == 0 || (alignment & (alignment - 1)) != 0)
    throw Error(ErrorKind::internal, "ExpertLayout", fmt::format("alignment {} is not a power of two", alignment));
  ExpertLayout L;
  L.alignment_ = alignment;
  L.n_layers_ = spec.n_layers;
  L.n_experts_ = spec.n_experts;
  Locator loc{store, spec, {}};
  for (const auto& f : store.files()) {
    loc.file_index[f.get()] = static_cast<int>(L.files_.size());
    L.files_.push_back(f->path());
    L.file_bytes_.push_back(f->file_bytes());
  }
  L.moe_index_.assign(static_cast<size_t>(spec.n_layers), -1);
  for (int64_t l = 0; l < spec.n_layers; ++l)
    if (l < static_cast<int64_t>(spec.layers.size()) && spec.layers[l].moe) {
      L.moe_index_[l] = static_cast<int32_t>(L.moe_layers_.size());
      L.moe_layers_.push_back(static_cast<int32_t>(l));
    }
  if (!L.moe_layers_.empty() && (spec.n_experts <= 0 || spec.moe_intermediate <= 0))
    throw Error(ErrorKind::model_format, store.dir().string() + "/config.json",
                "MoE layers but no expert count or moe intermediate size");
  const auto& n = spec.names;
  const int64_t H = spec.hidden, I = spec.moe_intermediate;
  for (int32_t l : L.moe_layers_) {
    const std::string p = fmt::format("model.layers.{}.", l);
    for (int64_t e = 0; e < spec.n_experts; ++e) {
      const ExpertTensorNames names = expert_tensor_names(n, store, p, e);
      ExpertLocation x;
      x.layer = l;
      x.expert = static_cast<int32_t>(e);
      x.stacked = names.stacked;
      const int64_t se = names.stacked ? e : -1;
      loc.add_proj(x, names.gate, ExpertProj::gate, I, H, se);
      loc.add_proj(x, names.up, ExpertProj::up, I, H, se);
      loc.add_proj(x, names.down, ExpertProj::down, H, I, se);
      std::sort(x.tensors.begin(), x.tensors.end(), [](const ExpertTensor& a, const ExpertTensor& b) {
        return std::pair(a.proj, a.role) < std::pair(b.proj, b.role);
      });
      for (const auto& t : x.tensors) x.tensor_bytes += t.nbytes;
      plan_expert_reads(x, L.file_bytes_, alignment);
      L.total_tensor_bytes_ += x.tensor_bytes;
      L.total_read_bytes_ += x.read_bytes;
      L.max_buffer_bytes_ = std::max(L.max_buffer_bytes_, x.buffer_bytes);
      L.experts_.push_back(std::move(x));
    }
  }
  return L;
}

bool ExpertLayout::is_moe_layer(int32_t layer) const { return moe_index(layer) >= 0; }

int32_t ExpertLayout::moe_index(int32_t layer) const {
  return layer >= 0 && layer < static_cast<int32_t>(moe_index_.size()) ? moe_index_[layer] : -1;
}

const ExpertLocation& ExpertLayout::at(int32_t layer, int32_t expert) const {
  const int32_t m = moe_index(layer);
  if (m < 0 || expert < 0 || expert >= n_experts_)
    throw Error(ErrorKind::invalid_input, "expert streaming",
                fmt::format("layer {} expert {} is not an expert of this model ({} experts on {} MoE layers)", layer,
                            expert, n_experts_, moe_layers_.size()));
  return experts_[static_cast<size_t>(m) * n_experts_ + expert];
}

}  // namespace lmlab
