// synth_model: writes a random-weight model directory (see lmlab/synth.h). The tensor list follows the HF
// module order of each architecture; values are generated per row from a seed derived from (seed, tensor,
// row), so the output does not depend on block sizes or the thread count.
#include "lmlab/synth.h"

#include <fmt/format.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "convert/model_writer.h"
#include "convert/quantize.h"
#include "lmlab/error.h"
#include "lmlab/tokenizer.h"
#include "util/half.h"
#include "util/thread_pool.h"

namespace lmlab {

namespace fs = std::filesystem;

namespace {

constexpr float kInitStd = 0.02f;

enum class Fill { normal, ones, zeros };

struct SynthTensor {
  std::string name;          // full name (bf16) or the Linear's prefix (quantized)
  std::vector<int64_t> shape;  // [(n_experts,) rows, cols] or [n]
  Fill fill = Fill::normal;
  int bits = 0;              // 0: bf16
  int64_t rows() const {
    int64_t r = 1;
    for (size_t i = 0; i + 1 < shape.size(); ++i) r *= shape[i];
    return shape.size() == 1 ? 1 : r;
  }
  int64_t cols() const { return shape.back(); }
};

uint64_t splitmix(uint64_t& s) {
  uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Row `row` of tensor `tensor`: N(0, std) approximated by the sum of four 16-bit uniforms (Irwin-Hall, exact
// mean and variance, tails cut at 3.46 sigma).
void fill_normal(uint64_t seed, uint64_t tensor, int64_t row, float stddev, float* out, int64_t n) {
  uint64_t s = seed ^ (tensor * 0xD1B54A32D192ED03ull);
  s = splitmix(s) ^ (static_cast<uint64_t>(row) * 0x9E3779B97F4A7C15ull);
  splitmix(s);
  const float mean = 4.0f * 32767.5f, inv_sd = stddev / (65536.0f * 0.57735026919f);
  for (int64_t i = 0; i < n; ++i) {
    const uint64_t r = splitmix(s);
    const float sum = static_cast<float>((r & 0xFFFF) + ((r >> 16) & 0xFFFF) + ((r >> 32) & 0xFFFF) + (r >> 48));
    out[i] = (sum - mean) * inv_sd;
  }
}

void validate(const SynthShape& s, int bits, int gs) {
  auto bad = [](const char* flag, const std::string& msg) { return Error(ErrorKind::invalid_input, flag, msg); };
  if (s.hidden <= 0) throw bad("--hidden", "must be positive");
  if (s.layers <= 0) throw bad("--layers", "must be positive");
  if (s.heads <= 0) throw bad("--heads", "must be positive");
  if (s.kv_heads <= 0 || s.heads % s.kv_heads != 0)
    throw bad("--kv-heads", fmt::format("{} query heads cannot share {} KV heads", s.heads, s.kv_heads));
  if (s.head_dim <= 0 || s.head_dim % 2 != 0) throw bad("--head-dim", "must be positive and even");
  if (s.intermediate <= 0) throw bad("--intermediate", "must be positive");
  if (s.vocab <= 0) throw bad("--vocab", "must be positive");
  const bool is_moe = s.arch == "qwen3_moe" || s.arch == "mixtral";
  if (is_moe) {
    if (s.experts <= 0) throw bad("--experts", "must be positive for a MoE architecture");
    if (s.top_k <= 0 || s.top_k > s.experts)
      throw bad("--top-k", fmt::format("top-{} of {} experts is invalid", s.top_k, s.experts));
    if (s.moe_intermediate <= 0) throw bad("--moe-intermediate", "must be positive");
  }
  if (bits != 16 && bits != 8 && bits != 4) throw bad("--bits", fmt::format("{} is not one of 4, 8, 16", bits));
  if (bits == 16) return;
  if (gs != 32 && gs != 64 && gs != 128) throw bad("--group-size", fmt::format("{} is not one of 32, 64, 128", gs));
  auto multiple = [&](const char* flag, int64_t v, const char* what) {
    if (v % gs != 0)
      throw bad(flag, fmt::format("{} {} is not a multiple of the group size {} (needed to quantize)", what, v, gs));
  };
  multiple("--hidden", s.hidden, "hidden size");
  multiple("--heads", s.heads * s.head_dim, "heads * head_dim");
  if (!is_moe || s.arch == "mixtral") multiple("--intermediate", s.intermediate, "intermediate size");
  if (is_moe) multiple("--moe-intermediate", s.moe_intermediate, "expert intermediate size");
}

// The tensors of the model, in HF module order.
std::vector<SynthTensor> tensor_list(const SynthShape& s, int bits) {
  const int qb = bits == 16 ? 0 : bits;
  const int64_t H = s.hidden, Q = s.heads * s.head_dim, KV = s.kv_heads * s.head_dim;
  const bool gemma = s.arch == "gemma3", qk_norm = s.arch != "llama" && s.arch != "mixtral";
  const Fill norm = gemma ? Fill::zeros : Fill::ones;  // gemma's norms scale by (1 + w)
  std::vector<SynthTensor> t;
  auto lin = [&](std::string name, std::vector<int64_t> shape, int b) { t.push_back({std::move(name), std::move(shape), Fill::normal, b}); };
  auto vec = [&](std::string name, int64_t n) { t.push_back({std::move(name), {n}, norm, 0}); };
  lin("model.embed_tokens", {s.vocab, H}, qb);
  for (int64_t l = 0; l < s.layers; ++l) {
    const std::string p = fmt::format("model.layers.{}.", l);
    vec(p + "input_layernorm.weight", H);
    lin(p + "self_attn.q_proj", {Q, H}, qb);
    lin(p + "self_attn.k_proj", {KV, H}, qb);
    lin(p + "self_attn.v_proj", {KV, H}, qb);
    lin(p + "self_attn.o_proj", {H, Q}, qb);
    if (qk_norm) {
      vec(p + "self_attn.q_norm.weight", s.head_dim);
      vec(p + "self_attn.k_norm.weight", s.head_dim);
    }
    vec(p + "post_attention_layernorm.weight", H);
    if (gemma) {
      vec(p + "pre_feedforward_layernorm.weight", H);
      vec(p + "post_feedforward_layernorm.weight", H);
    }
    if (s.arch == "qwen3_moe") {
      const int64_t E = s.experts, I = s.moe_intermediate;
      lin(p + "mlp.gate", {E, H}, qb ? 8 : 0);  // mlx-lm keeps routers at 8 bits
      if (qb) {
        lin(p + "mlp.switch_mlp.gate_proj", {E, I, H}, qb);
        lin(p + "mlp.switch_mlp.up_proj", {E, I, H}, qb);
        lin(p + "mlp.switch_mlp.down_proj", {E, H, I}, qb);
      } else {
        for (int64_t e = 0; e < E; ++e) {
          lin(fmt::format("{}mlp.experts.{}.gate_proj", p, e), {I, H}, 0);
          lin(fmt::format("{}mlp.experts.{}.up_proj", p, e), {I, H}, 0);
          lin(fmt::format("{}mlp.experts.{}.down_proj", p, e), {H, I}, 0);
        }
      }
    } else if (s.arch == "mixtral") {
      // Per-expert even when quantized: lmlab's mixtral reads w1/w2/w3 per expert, and mlx-lm stacks
      // per-expert weight/scales/biases into switch_mlp itself when it loads.
      const int64_t E = s.experts, I = s.intermediate;
      lin(p + "block_sparse_moe.gate", {E, H}, qb ? 8 : 0);
      for (int64_t e = 0; e < E; ++e) {
        lin(fmt::format("{}block_sparse_moe.experts.{}.w1", p, e), {I, H}, qb);
        lin(fmt::format("{}block_sparse_moe.experts.{}.w2", p, e), {H, I}, qb);
        lin(fmt::format("{}block_sparse_moe.experts.{}.w3", p, e), {I, H}, qb);
      }
    } else {
      lin(p + "mlp.gate_proj", {s.intermediate, H}, qb);
      lin(p + "mlp.up_proj", {s.intermediate, H}, qb);
      lin(p + "mlp.down_proj", {H, s.intermediate}, qb);
    }
  }
  vec("model.norm.weight", H);
  if (!s.tied_embeddings) lin("lm_head", {s.vocab, H}, qb);
  return t;
}

nlohmann::ordered_json config_json(const SynthShape& s, int bits, int gs, const nlohmann::json& bos,
                                   const nlohmann::json& eos) {
  nlohmann::ordered_json c;
  const bool gemma = s.arch == "gemma3";
  static const std::map<std::string, std::string> kClass = {{"llama", "LlamaForCausalLM"},
                                                            {"qwen3", "Qwen3ForCausalLM"},
                                                            {"qwen3_moe", "Qwen3MoeForCausalLM"},
                                                            {"mixtral", "MixtralForCausalLM"},
                                                            {"gemma3", "Gemma3ForCausalLM"}};
  c["architectures"] = {kClass.at(s.arch)};
  c["model_type"] = gemma ? "gemma3_text" : s.arch;
  c["attention_bias"] = false;
  c["attention_dropout"] = 0.0;
  c["bos_token_id"] = bos;
  c["eos_token_id"] = eos;
  c["head_dim"] = s.head_dim;
  c[gemma ? "hidden_activation" : "hidden_act"] = gemma ? "gelu_pytorch_tanh" : "silu";
  c["hidden_size"] = s.hidden;
  c["initializer_range"] = 0.02;
  c["intermediate_size"] = s.intermediate;
  c["max_position_embeddings"] = s.max_positions;
  c["num_attention_heads"] = s.heads;
  c["num_hidden_layers"] = s.layers;
  c["num_key_value_heads"] = s.kv_heads;
  c["rms_norm_eps"] = s.norm_eps;
  c["rope_theta"] = s.rope_theta;
  c["rope_scaling"] = nullptr;
  if (s.rope_linear_factor > 1.0) c["rope_scaling"] = {{"factor", s.rope_linear_factor}, {"rope_type", "linear"}};
  c["tie_word_embeddings"] = s.tied_embeddings;
  c["torch_dtype"] = "bfloat16";
  c["use_cache"] = true;
  c["vocab_size"] = s.vocab;
  if (s.arch == "llama") {
    c["mlp_bias"] = false;
    c["pretraining_tp"] = 1;
  }
  if (s.arch == "qwen3" || s.arch == "qwen3_moe") {
    c["max_window_layers"] = s.layers;
    c["sliding_window"] = nullptr;
    c["use_sliding_window"] = false;
  }
  if (s.arch == "qwen3_moe") {
    c["decoder_sparse_step"] = 1;
    c["mlp_only_layers"] = nlohmann::json::array();
    c["moe_intermediate_size"] = s.moe_intermediate;
    c["norm_topk_prob"] = true;
    c["num_experts"] = s.experts;
    c["num_experts_per_tok"] = s.top_k;
    c["output_router_logits"] = false;
    c["router_aux_loss_coef"] = 0.001;
  }
  if (s.arch == "mixtral") {
    c["num_local_experts"] = s.experts;
    c["num_experts_per_tok"] = s.top_k;
    c["output_router_logits"] = false;
    c["router_aux_loss_coef"] = 0.02;
    c["router_jitter_noise"] = 0.0;
    c["sliding_window"] = nullptr;
  }
  if (gemma) {
    c["attn_logit_softcapping"] = nullptr;
    c["final_logit_softcapping"] = nullptr;
    c["query_pre_attn_scalar"] = s.query_pre_attn_scalar > 0 ? s.query_pre_attn_scalar : static_cast<double>(s.head_dim);
    c["rope_local_base_freq"] = 10000.0;
    c["sliding_window"] = s.sliding_window;
    c["sliding_window_pattern"] = s.sliding_window_pattern;
    nlohmann::json types = nlohmann::json::array();
    for (int64_t l = 0; l < s.layers; ++l)
      types.push_back((l + 1) % s.sliding_window_pattern == 0 ? "full_attention" : "sliding_attention");
    c["layer_types"] = types;
  }
  if (bits != 16) {
    nlohmann::ordered_json q;
    q["group_size"] = gs;
    q["bits"] = bits;
    if (bits != 8 && s.experts > 0)
      for (int64_t l = 0; l < s.layers; ++l)
        q[fmt::format("model.layers.{}.{}", l, s.arch == "mixtral" ? "block_sparse_moe.gate" : "mlp.gate")] = {
            {"group_size", gs}, {"bits", 8}};
    c["quantization"] = q;
    c["quantization_config"] = q;
  }
  return c;
}

nlohmann::json read_json_or_null(const fs::path& p) {
  std::ifstream in(p);
  if (!in) return nullptr;
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw Error(ErrorKind::model_format, p.string(), e.what());
  }
}

// Generates and writes one tensor (bf16, or weight + scales + biases) block by block.
void write_tensor(const SynthTensor& t, uint64_t index, uint64_t seed, int gs, float stddev, ShardedModelWriter& out) {
  const int64_t rows = t.rows(), cols = t.cols();
  if (t.fill != Fill::normal) {
    const uint16_t v = f32_to_bf16(t.fill == Fill::ones ? 1.0f : 0.0f);
    out.write_values<uint16_t>(std::vector<uint16_t>(static_cast<size_t>(rows * cols), v));
    return;
  }
  const int64_t block_rows = std::max<int64_t>(1, (int64_t{1} << 22) / cols);  // ~4M values per block
  const int64_t words = t.bits ? cols * t.bits / 32 : 0, groups = t.bits ? cols / gs : 0;
  std::vector<float> w(static_cast<size_t>(std::min(block_rows, rows) * cols));
  std::vector<uint16_t> half, scales, biases;
  std::vector<uint32_t> packed;
  for (int64_t r0 = 0; r0 < rows; r0 += block_rows) {
    const int64_t nr = std::min(block_rows, rows - r0);
    if (t.bits) {
      packed.resize(static_cast<size_t>(nr * words));
      scales.resize(static_cast<size_t>((r0 + nr) * groups));
      biases.resize(scales.size());
    } else {
      half.resize(static_cast<size_t>(nr * cols));
    }
    ThreadPool::global().parallel_for(
        nr,
        [&](int64_t a, int64_t b) {
          for (int64_t r = a; r < b; ++r) {
            float* wr = w.data() + r * cols;
            fill_normal(seed, index, r0 + r, stddev, wr, cols);
            if (!t.bits)
              for (int64_t c = 0; c < cols; ++c) half[r * cols + c] = f32_to_bf16(wr[c]);
          }
          if (t.bits)
            quantize_affine(w.data() + a * cols, b - a, cols, t.bits, gs, kernels::ScaleType::bf16,
                            packed.data() + a * words, scales.data() + (r0 + a) * groups,
                            biases.data() + (r0 + a) * groups);
        },
        4);
    if (t.bits) out.write_values<uint32_t>(packed);
    else out.write_values<uint16_t>(half);
  }
  if (t.bits) {
    out.write_values<uint16_t>(scales);
    out.write_values<uint16_t>(biases);
  }
}

// Refuses before the first byte is written when the tensors cannot fit on the output's filesystem (a large
// --scale asks for terabytes, and a disk filled to the brim hurts everyone on the machine).
// Called with the parameters' bytes before the tensor list is built (a huge shape has millions of tensors),
// then with the exact bytes of that list.
void check_free_space(const fs::path& out_dir, double need) {
  fs::path probe = fs::absolute(out_dir);
  while (!fs::exists(probe) && probe.has_parent_path() && probe.parent_path() != probe) probe = probe.parent_path();
  std::error_code ec;
  const fs::space_info sp = fs::space(probe, ec);
  if (ec) return;  // no figure to compare with: the writer's own errors still apply
  if (need > static_cast<double>(sp.available))
    throw Error(ErrorKind::invalid_input, "--out",
                fmt::format("the model needs {:.1f} GB but {} has {:.1f} GB free (lower --scale or the shape)",
                            need / 1e9, probe.string(), static_cast<double>(sp.available) / 1e9));
}

}  // namespace

SynthResult synth_model(const fs::path& out_dir, const SynthOptions& opt) {
  SynthShape s = opt.shape;
  synth_default_shape(s.arch);  // rejects an unknown architecture, naming --arch
  if (s.arch == "mixtral") s.moe_intermediate = s.intermediate;  // mixtral's experts use intermediate_size
  if (s.arch != "qwen3_moe" && s.arch != "mixtral") s.experts = s.top_k = s.moe_intermediate = 0;
  if (s.arch == "gemma3" && s.sliding_window <= 0) s.sliding_window = 4096;

  // Tokenizer: its vocabulary decides the model's unless told otherwise.
  const fs::path tok_json = opt.tokenizer_from / "tokenizer.json";
  if (opt.tokenizer_from.empty() || !fs::exists(tok_json))
    throw Error(ErrorKind::invalid_input, "--tokenizer-from",
                fmt::format("no tokenizer.json in '{}' (give a model directory with a tokenizer)",
                            opt.tokenizer_from.string()));
  const int64_t tok_vocab = Tokenizer::from_file(tok_json).vocab_size();
  if (opt.vocab_from_tokenizer) s.vocab = tok_vocab;
  else if (s.vocab < tok_vocab)
    throw Error(ErrorKind::invalid_input, "--vocab",
                fmt::format("{} is smaller than the tokenizer's vocabulary ({}): its ids would be out of range",
                            s.vocab, tok_vocab));
  validate(s, opt.bits, opt.group_size);
  if (!(opt.embed_std > 0.0f && opt.embed_std <= 100.0f))
    throw Error(ErrorKind::invalid_input, "--embed-std", fmt::format("{} is not in (0, 100]", opt.embed_std));
  {  // in floating point: parameter_count() wraps a uint64_t at these sizes
    const double H = static_cast<double>(s.hidden), q = static_cast<double>(s.heads * s.head_dim),
                 kv = static_cast<double>(s.kv_heads * s.head_dim);
    const double mlp = s.experts > 0 ? static_cast<double>(s.experts) * 3 * H * static_cast<double>(s.moe_intermediate)
                                     : 3 * H * static_cast<double>(s.intermediate);
    const double embed = (s.tied_embeddings ? 1 : 2) * static_cast<double>(s.vocab) * H;
    const double params = static_cast<double>(s.layers) * (H * (2 * q + 2 * kv) + mlp) + embed;
    check_free_space(out_dir, params * opt.bits / 8);
  }

  const std::vector<SynthTensor> tensors = tensor_list(s, opt.bits);
  std::vector<TensorDecl> decls;
  for (const auto& t : tensors) {
    if (!t.bits) {
      decls.push_back({t.fill == Fill::normal ? t.name + ".weight" : t.name, DType::bf16, t.shape});
      continue;
    }
    std::vector<int64_t> w = t.shape, g = t.shape;
    w.back() = t.cols() * t.bits / 32;
    g.back() = t.cols() / opt.group_size;
    decls.push_back({t.name + ".weight", DType::u32, w});
    decls.push_back({t.name + ".scales", DType::bf16, g});
    decls.push_back({t.name + ".biases", DType::bf16, g});
  }

  prepare_output_dir(out_dir, "--out");
  std::map<std::string, std::string> meta = {{"format", opt.bits == 16 ? "pt" : "mlx"}};
  double exact = 0;
  for (const auto& d : decls) {
    double n = static_cast<double>(dtype_size(d.dtype));
    for (int64_t x : d.shape) n *= static_cast<double>(x);
    exact += n;
  }
  check_free_space(out_dir, exact);
  ShardedModelWriter out(out_dir, std::move(decls), opt.shard_bytes, meta, opt.progress);
  for (size_t i = 0; i < tensors.size(); ++i)
    write_tensor(tensors[i], i, opt.seed, opt.group_size,
                 tensors[i].name == "model.embed_tokens" ? opt.embed_std : kInitStd, out);
  out.finish();

  // Config and side files; bos / eos ids follow the tokenizer's model.
  const nlohmann::json src_cfg = read_json_or_null(opt.tokenizer_from / "config.json");
  const nlohmann::json src_gen = read_json_or_null(opt.tokenizer_from / "generation_config.json");
  auto id_of = [&](const char* key) -> nlohmann::json {
    if (src_gen.is_object() && src_gen.contains(key)) return src_gen[key];
    if (src_cfg.is_object() && src_cfg.contains(key)) return src_cfg[key];
    return nullptr;
  };
  const nlohmann::json bos = id_of("bos_token_id"), eos = id_of("eos_token_id");
  write_text_file(out_dir / "config.json", config_json(s, opt.bits, opt.group_size, bos, eos).dump(2) + "\n");
  nlohmann::ordered_json gen;
  if (!bos.is_null()) gen["bos_token_id"] = bos;
  if (!eos.is_null()) gen["eos_token_id"] = eos;
  gen["do_sample"] = false;
  write_text_file(out_dir / "generation_config.json", gen.dump(2) + "\n");
  for (const char* f : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
                        "chat_template.jinja"}) {
    const fs::path src = opt.tokenizer_from / f;
    if (!fs::exists(src)) continue;
    std::error_code ec;
    fs::copy_file(src, out_dir / f, fs::copy_options::overwrite_existing, ec);
    if (!ec) fs::permissions(out_dir / f, fs::perms::owner_write, fs::perm_options::add, ec);
    if (ec) throw Error(ErrorKind::io, (out_dir / f).string(), "cannot copy from " + src.string() + ": " + ec.message());
  }

  SynthResult res;
  res.shape = s;
  res.bytes_written = out.total_bytes();
  for (const auto& t : tensors) {
    uint64_t n = 1;
    for (int64_t d : t.shape) n *= static_cast<uint64_t>(d);
    res.parameters += n;
  }
  const uint64_t idle_experts = s.experts > 0 ? static_cast<uint64_t>(s.experts - s.top_k) : 0;
  res.active_parameters = res.parameters - static_cast<uint64_t>(s.layers) * idle_experts * 3 *
                                               static_cast<uint64_t>(s.hidden) * static_cast<uint64_t>(s.moe_intermediate);
  res.shards = out.shard_count();
  return res;
}

}  // namespace lmlab
