// convert_model: HF bf16 / f16 / f32 weights -> MLX affine-quantized model (see lmlab/convert.h).
// Plan first (which tensors are quantized, copied or stacked; every output shape, so the shard headers can
// be written up front), then stream: each quantized tensor is read from the mapped input a block of rows at a
// time, quantized in parallel and appended; its scales and biases (1/8 of the packed bytes at 4 bits, group
// 64) are held until the packed weight is written, since they follow it in the file.
#include "lmlab/convert.h"

#include <fmt/format.h>

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>

#include "arch/registry.h"
#include "convert/model_writer.h"
#include "convert/quantize.h"
#include "lmlab/error.h"
#include "lmlab/safetensors.h"
#include "util/half.h"
#include "util/thread_pool.h"

namespace lmlab {

namespace fs = std::filesystem;

namespace {

// One output tensor, or the weight/scales/biases triple of one quantized Linear.
struct Entry {
  std::string name;                // full name (copy) or the Linear's prefix (quantized)
  bool quantized = false;
  bool stacked = false;            // output has a leading [n_experts] axis
  bool slices = false;             // sources are the n_experts slices of one stacked input tensor
  std::vector<TensorRef> sources;  // 1, or n_experts stacked along a new leading axis
  int64_t rows = 0, cols = 0;      // per source (quantized)
  int bits = 0, group_size = 0;
  kernels::ScaleType scale_type = kernels::ScaleType::bf16;
  QuantMethod method = QuantMethod::mse;
};

std::string where_of(const TensorRef& t) { return t.file->path().string() + ": tensor '" + t.info->name + "'"; }

bool is_float(DType t) { return t == DType::bf16 || t == DType::f16 || t == DType::f32; }

void to_f32(const TensorRef& t, int64_t offset, int64_t n, float* out) {
  const uint8_t* p = t.data();
  switch (t.info->dtype) {
    case DType::f32: std::memcpy(out, reinterpret_cast<const float*>(p) + offset, n * sizeof(float)); break;
    case DType::f16:
      for (int64_t i = 0; i < n; ++i) out[i] = f16_to_f32(reinterpret_cast<const uint16_t*>(p)[offset + i]);
      break;
    case DType::bf16:
      for (int64_t i = 0; i < n; ++i) out[i] = bf16_to_f32(reinterpret_cast<const uint16_t*>(p)[offset + i]);
      break;
    default: throw Error(ErrorKind::unsupported, where_of(t), "cannot quantize a non-float tensor");
  }
}

std::vector<int64_t> with_experts(const Entry& e, int64_t last) {
  std::vector<int64_t> s = {e.rows, last};
  if (e.stacked) s.insert(s.begin(), static_cast<int64_t>(e.sources.size()));
  return s;
}

// Quantizes one Entry's sources block by block and appends weight, then scales, then biases.
void write_quantized(const Entry& e, ShardedModelWriter& out) {
  const int64_t words = e.cols * e.bits / 32, groups = e.cols / e.group_size;
  const int64_t block_rows = std::max<int64_t>(1, (int64_t{1} << 21) / e.cols);  // ~2M values per block
  std::vector<uint16_t> scales, biases;
  scales.reserve(static_cast<size_t>(e.rows * groups * static_cast<int64_t>(e.sources.size())));
  biases.reserve(scales.capacity());
  std::vector<float> w;
  std::vector<uint32_t> packed;
  std::vector<uint16_t> s_blk, b_blk;
  for (const TensorRef& src : e.sources) {
    for (int64_t r0 = 0; r0 < e.rows; r0 += block_rows) {
      const int64_t nr = std::min(block_rows, e.rows - r0);
      w.resize(static_cast<size_t>(nr * e.cols));
      packed.resize(static_cast<size_t>(nr * words));
      s_blk.resize(static_cast<size_t>(nr * groups));
      b_blk.resize(s_blk.size());
      ThreadPool::global().parallel_for(
          nr,
          [&](int64_t a, int64_t b) {
            to_f32(src, (r0 + a) * e.cols, (b - a) * e.cols, w.data() + a * e.cols);
            quantize_affine(w.data() + a * e.cols, b - a, e.cols, e.bits, e.group_size, e.scale_type,
                            packed.data() + a * words, s_blk.data() + a * groups, b_blk.data() + a * groups,
                            e.method);
          },
          8);
      out.write_values<uint32_t>(packed);
      scales.insert(scales.end(), s_blk.begin(), s_blk.end());
      biases.insert(biases.end(), b_blk.begin(), b_blk.end());
    }
  }
  out.write_values<uint16_t>(scales);
  out.write_values<uint16_t>(biases);
}

nlohmann::ordered_json quant_json(int bits, int group_size) {
  nlohmann::ordered_json q;
  q["group_size"] = group_size;
  q["bits"] = bits;
  return q;
}

}  // namespace

ConvertResult convert_model(const fs::path& in_dir, const fs::path& out_dir, const ConvertOptions& opt) {
  auto check_bits = [](int bits, const char* flag) {
    if (bits != 2 && bits != 3 && bits != 4 && bits != 6 && bits != 8)
      throw Error(ErrorKind::invalid_input, flag, fmt::format("{} is not one of 2, 3, 4, 6, 8", bits));
    return bits;
  };
  check_bits(opt.bits, "--bits");
  if (opt.group_size != 32 && opt.group_size != 64 && opt.group_size != 128)
    throw Error(ErrorKind::invalid_input, "--group-size", fmt::format("{} is not one of 32, 64, 128", opt.group_size));
  const int router_bits = check_bits(opt.router_bits > 0 ? opt.router_bits : opt.bits, "--router-bits");
  const int embedding_bits = check_bits(opt.embedding_bits > 0 ? opt.embedding_bits : opt.bits, "--embedding-bits");
  const QuantMethod method = opt.fit == QuantFit::mse ? QuantMethod::mse : QuantMethod::minmax;

  // The config, as written (key order kept), and the architecture's tensor names.
  const fs::path cfg_path = in_dir / "config.json";
  std::ifstream cfg_in(cfg_path);
  if (!cfg_in) throw Error(ErrorKind::io, cfg_path.string(), "cannot open");
  nlohmann::ordered_json config;
  try {
    config = nlohmann::ordered_json::parse(cfg_in);
  } catch (const nlohmann::json::exception& ex) {
    throw Error(ErrorKind::model_format, cfg_path.string(), ex.what());
  }
  for (const char* key : {"quantization", "quantization_config"})
    if (config.contains(key) && !config[key].is_null())
      throw Error(ErrorKind::invalid_input, cfg_path.string() + ": field '" + key + "'",
                  "the model is already quantized");
  const ModelSpec spec = load_model_spec(in_dir.string());
  const WeightStore store = WeightStore::open_dir(in_dir);

  // Plan.
  const auto& n = spec.names;
  // mlx-lm stacks per-expert weights into switch_mlp.{gate,up,down}_proj; lmlab reads stacked experts under
  // the architecture's own projection names, which are those only when they are gate_proj / up_proj /
  // down_proj (qwen3_moe). Mixtral's w1/w2/w3 stay per expert (mlx-lm stacks them itself when loading).
  const bool stack = spec.n_experts > 0 && n.gate == "gate_proj" && n.up == "up_proj" && n.down == "down_proj";
  std::vector<Entry> entries;
  std::map<std::string, bool> consumed;
  nlohmann::ordered_json quant = quant_json(opt.bits, opt.group_size);
  auto add_linear = [&](const std::string& prefix, std::vector<TensorRef> sources, int bits, bool stacked) {
    Entry e;
    e.name = prefix;
    e.quantized = true;
    e.stacked = stacked;
    e.rows = sources[0].info->shape[0];
    e.cols = sources[0].info->shape[1];
    e.bits = bits;
    e.group_size = opt.group_size;
    e.scale_type = sources[0].info->dtype == DType::f16 ? kernels::ScaleType::f16 : kernels::ScaleType::bf16;
    e.method = method;
    e.sources = std::move(sources);
    entries.push_back(std::move(e));
  };
  auto quantizable = [&](const TensorRef& t) {
    return is_float(t.info->dtype) && t.info->shape.size() == 2 && t.info->shape[1] % opt.group_size == 0 &&
           t.info->shape[0] > 0;
  };
  if (stack)
    for (int64_t l = 0; l < spec.n_layers; ++l) {
      if (!spec.layers[l].moe) continue;
      const std::string p = fmt::format("model.layers.{}.", l);
      for (const std::string& proj : {n.gate, n.up, n.down}) {
        std::vector<TensorRef> srcs;
        for (int64_t x = 0; x < spec.n_experts; ++x) {
          const std::string name = fmt::format("{}{}.{}.{}.weight", p, n.experts, x, proj);
          TensorRef t = store.find(name);
          if (!t) break;
          if (!srcs.empty() && t.info->shape != srcs[0].info->shape)
            throw Error(ErrorKind::model_format, where_of(t), "expert shapes differ; cannot stack");
          srcs.push_back(t);
        }
        if (srcs.empty()) continue;  // already stacked, or another layout: handled below as plain tensors
        if (static_cast<int64_t>(srcs.size()) != spec.n_experts)
          throw Error(ErrorKind::model_format, in_dir.string(),
                      fmt::format("{}{}.*.{}: found {} of {} experts", p, n.experts, proj, srcs.size(), spec.n_experts));
        if (!quantizable(srcs[0]))
          throw Error(ErrorKind::unsupported, where_of(srcs[0]),
                      fmt::format("cannot quantize with group size {}", opt.group_size));
        for (const auto& s : srcs) consumed[s.info->name] = true;
        add_linear(p + n.stacked_experts + "." + proj, std::move(srcs), opt.bits, true);
      }
    }
  for (const std::string& name : store.names()) {
    if (consumed.count(name)) continue;
    const TensorRef t = store.find(name);
    const std::string suffix = ".weight";
    const bool is_weight = name.size() > suffix.size() && name.ends_with(suffix);
    const std::string prefix = is_weight ? name.substr(0, name.size() - suffix.size()) : name;
    bool router = false;
    for (int64_t l = 0; l < spec.n_layers && !router && spec.n_experts > 0; ++l)
      router = prefix == fmt::format("model.layers.{}.{}", l, n.router);
    const bool stacked_3d = is_float(t.info->dtype) && t.info->shape.size() == 3 &&
                            t.info->shape[2] % opt.group_size == 0 && prefix.find(".switch_mlp.") != std::string::npos;
    if (is_weight && (quantizable(t) || stacked_3d)) {
      const bool embedding = prefix == "model.embed_tokens" || prefix == "lm_head";
      const int bits = router ? router_bits : embedding ? embedding_bits : opt.bits;
      if (stacked_3d) {  // an already stacked (MLX-layout) bf16 expert tensor: quantize each expert slice
        Entry e;
        e.name = prefix;
        e.quantized = true;
        e.stacked = e.slices = true;
        e.rows = t.info->shape[1];
        e.cols = t.info->shape[2];
        e.bits = bits;
        e.group_size = opt.group_size;
        e.scale_type = t.info->dtype == DType::f16 ? kernels::ScaleType::f16 : kernels::ScaleType::bf16;
        e.method = method;
        // One "source" per expert: views of the slices of the stacked tensor.
        for (int64_t x = 0; x < t.info->shape[0]; ++x) e.sources.push_back(t);
        entries.push_back(std::move(e));
      } else {
        add_linear(prefix, {t}, bits, false);
      }
      if (bits != opt.bits) quant[prefix] = quant_json(bits, opt.group_size);
    } else {
      Entry e;
      e.name = name;
      e.sources = {t};
      entries.push_back(std::move(e));
    }
  }

  // Declarations, in write order.
  std::vector<TensorDecl> decls;
  ConvertResult result;
  for (const Entry& e : entries) {
    // Slices share one stacked source tensor: count it once.
    for (size_t i = 0; i < (e.slices ? 1 : e.sources.size()); ++i) result.bytes_read += e.sources[i].info->nbytes;
    if (!e.quantized) {
      decls.push_back({e.name, e.sources[0].info->dtype, e.sources[0].info->shape});
      ++result.tensors_copied;
      continue;
    }
    const DType sd = e.scale_type == kernels::ScaleType::f16 ? DType::f16 : DType::bf16;
    decls.push_back({e.name + ".weight", DType::u32, with_experts(e, e.cols * e.bits / 32)});
    decls.push_back({e.name + ".scales", sd, with_experts(e, e.cols / e.group_size)});
    decls.push_back({e.name + ".biases", sd, with_experts(e, e.cols / e.group_size)});
    ++result.tensors_quantized;
  }

  prepare_output_dir(out_dir, "--out");
  ShardedModelWriter out(out_dir, std::move(decls), opt.shard_bytes, {{"format", "mlx"}}, opt.progress);
  for (const Entry& e : entries) {
    if (!e.quantized) {
      const TensorRef& t = e.sources[0];
      out.write({t.data(), static_cast<size_t>(t.info->nbytes)});
    } else if (e.slices) {
      // Slices of one stacked tensor: quantize expert by expert through a one-expert view.
      std::vector<TensorInfo> views;
      Entry one = e;
      one.sources.clear();
      const TensorRef& t = e.sources[0];
      const uint64_t slice = t.info->nbytes / e.sources.size();
      for (size_t x = 0; x < e.sources.size(); ++x) {
        TensorInfo v = *t.info;
        v.shape = {e.rows, e.cols};
        v.offset = t.info->offset + x * slice;
        v.nbytes = slice;
        views.push_back(v);
      }
      for (const auto& v : views) one.sources.push_back(TensorRef{&v, t.file});
      write_quantized(one, out);
    } else {
      write_quantized(e, out);
    }
  }
  out.finish();
  result.bytes_written = out.total_bytes();
  result.shards = out.shard_count();

  config["quantization"] = quant;
  config["quantization_config"] = quant;
  write_text_file(out_dir / "config.json", config.dump(2) + "\n");
  copy_model_side_files(in_dir, out_dir);
  return result;
}

}  // namespace lmlab
