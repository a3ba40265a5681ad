// Config parsing shared by all architectures, accepting both transformers 4.x and 5.x spellings.
#include <cmath>
#include <numbers>

#include "config/config_reader.h"
#include "config/model_spec.h"

namespace lmlab {

namespace {

void parse_quantization(ConfigReader& cfg, ModelSpec& spec) {
  const nlohmann::json* q = cfg.find("quantization");
  cfg.find("quantization_config");  // mlx-lm writes both; they carry the same content
  if (!q) return;
  if (!q->is_object()) throw cfg.error("quantization", "expected an object");
  auto read = [&](const nlohmann::json& o, const std::string& field) {
    QuantSpec s;
    if (!o.contains("bits") || !o.contains("group_size") || !o["bits"].is_number_integer() ||
        !o["group_size"].is_number_integer())
      throw cfg.error(field, "needs integer 'bits' and 'group_size'");
    s.bits = o["bits"].get<int>();
    s.group_size = o["group_size"].get<int>();
    if (s.bits != 2 && s.bits != 3 && s.bits != 4 && s.bits != 6 && s.bits != 8)
      throw cfg.unsupported(field, fmt::format("{} bits is not supported", s.bits));
    if (s.group_size <= 0) throw cfg.error(field, "group_size must be positive");
    return s;
  };
  if (q->contains("mode") && (*q)["mode"] != "affine")
    throw cfg.unsupported("quantization.mode", fmt::format("quantization mode {} is not supported (affine is)",
                                                           (*q)["mode"].dump()));
  spec.quant = read(*q, "quantization");
  for (auto it = q->begin(); it != q->end(); ++it) {
    if (it.value().is_object()) spec.quant_overrides.emplace_back(it.key(), read(it.value(), "quantization." + it.key()));
    else if (it.value().is_boolean() && !it.value().get<bool>())
      spec.quant_overrides.emplace_back(it.key(), QuantSpec{});  // explicitly left unquantized
  }
}

std::vector<int32_t> read_ids(ConfigReader& cfg, const std::string& key) {
  const nlohmann::json* v = cfg.find(key);
  std::vector<int32_t> out;
  if (!v) return out;
  if (v->is_number_integer()) out.push_back(v->get<int32_t>());
  else if (v->is_array())
    for (auto& x : *v) {
      if (!x.is_number_integer()) throw cfg.error(key, "expected integer token ids");
      out.push_back(x.get<int32_t>());
    }
  else throw cfg.error(key, "expected an integer or a list of integers");
  return out;
}

}  // namespace

void parse_common(ConfigReader& cfg, ModelSpec& spec) {
  spec.vocab = cfg.get<int64_t>("vocab_size");
  spec.hidden = cfg.get<int64_t>("hidden_size");
  spec.n_layers = cfg.get<int64_t>("num_hidden_layers");
  spec.n_heads = cfg.get<int64_t>("num_attention_heads");
  spec.n_kv_heads = cfg.get_or<int64_t>("num_key_value_heads", spec.n_heads);
  spec.head_dim = cfg.get_or<int64_t>("head_dim", spec.n_heads > 0 ? spec.hidden / spec.n_heads : 0);
  spec.intermediate = cfg.get<int64_t>("intermediate_size");
  spec.max_positions = cfg.get_or<int64_t>("max_position_embeddings", 4096);
  spec.norm_eps = static_cast<float>(cfg.get_or<double>("rms_norm_eps", 1e-6));
  spec.tied_embeddings = cfg.get_or<bool>("tie_word_embeddings", false);
  spec.attention_bias = cfg.get_or<bool>("attention_bias", false);
  // Upper bounds far above any real model, checked before anything is sized by these fields (a head_dim of
  // 2^32 used to allocate 16 GB of RoPE tables before the tensor shapes could disagree).
  auto in_range = [&](const char* key, int64_t v, int64_t hi) {
    if (v <= 0 || v > hi) throw cfg.error(key, fmt::format("must be in 1..{}, got {}", hi, v));
  };
  in_range("vocab_size", spec.vocab, int64_t{1} << 24);
  in_range("hidden_size", spec.hidden, int64_t{1} << 20);
  in_range("num_hidden_layers", spec.n_layers, int64_t{1} << 12);
  in_range("num_attention_heads", spec.n_heads, int64_t{1} << 12);
  in_range("num_key_value_heads", spec.n_kv_heads, int64_t{1} << 12);
  in_range("head_dim", spec.head_dim, int64_t{1} << 14);
  in_range("intermediate_size", spec.intermediate, int64_t{1} << 22);
  in_range("max_position_embeddings", spec.max_positions, int64_t{1} << 30);
  if (!std::isfinite(spec.norm_eps) || spec.norm_eps < 0)
    throw cfg.error("rms_norm_eps", fmt::format("must be a finite number >= 0, got {}", spec.norm_eps));
  if (spec.n_heads % spec.n_kv_heads != 0)
    throw cfg.error("num_key_value_heads", fmt::format("{} query heads cannot share {} KV heads", spec.n_heads,
                                                       spec.n_kv_heads));
  if (spec.head_dim % 2 != 0) throw cfg.error("head_dim", "must be even");
  if (auto mlp_bias = cfg.get_opt<bool>("mlp_bias"); mlp_bias && *mlp_bias)
    throw cfg.unsupported("mlp_bias", "MLP biases are not supported");
  if (auto act = cfg.get_any<std::string>({"hidden_act", "hidden_activation"}); act) {
    if (*act == "silu" || *act == "swish") spec.activation = Activation::silu;
    else if (*act == "gelu_pytorch_tanh" || *act == "gelu_tanh") spec.activation = Activation::gelu_tanh;
    else throw cfg.unsupported("hidden_act", fmt::format("activation '{}' is not supported", *act));
  }
  auto bos = read_ids(cfg, "bos_token_id");
  spec.bos_id = bos.empty() ? -1 : bos[0];
  spec.eos_ids = read_ids(cfg, "eos_token_id");
  cfg.get_any<std::string>({"torch_dtype", "dtype"});  // informative only: weights carry their dtype
  for (const char* k : {"architectures", "transformers_version", "initializer_range", "use_cache", "pad_token_id",
                        "attention_dropout", "pretraining_tp", "output_router_logits", "router_aux_loss_coef",
                        "router_jitter_noise"})
    cfg.find(k);  // read and deliberately unused: training-only or informative
  parse_quantization(cfg, spec);
  spec.layers.assign(static_cast<size_t>(spec.n_layers), LayerSpec{});
}

// RoPE parameters: 5.x "rope_parameters" (per layer type for gemma3) or 4.x "rope_theta" + "rope_scaling".
RopeSpec parse_rope(ConfigReader& cfg, const std::string& layer_type, int64_t head_dim, double default_theta) {
  nlohmann::json params = nlohmann::json::object();
  std::string field = "rope_parameters";
  if (const nlohmann::json* rp = cfg.find("rope_parameters")) {
    params = *rp;
    if (!layer_type.empty() && params.contains(layer_type)) {
      params = params[layer_type];
      field += "." + layer_type;
    }
  } else {
    field = "rope_scaling";
    if (const nlohmann::json* rs = cfg.find("rope_scaling")) params = *rs;
    if (auto theta = cfg.get_opt<double>("rope_theta")) params["rope_theta"] = *theta;
    else params["rope_theta"] = default_theta;
  }
  if (!params.is_object()) throw cfg.error(field, "expected an object");
  // A positive finite number at params[key] (or `def`), named in the error as field.key.
  auto positive = [&](const char* key, double def) {
    const auto it = params.find(key);
    if (it == params.end() || it->is_null()) return def;
    if (!it->is_number() || !std::isfinite(it->get<double>()) || it->get<double>() <= 0)
      throw cfg.error(field == "rope_scaling" && std::string_view(key) == "rope_theta" ? key : field + "." + key,
                      fmt::format("must be a positive number, got {}", it->dump()));
    return it->get<double>();
  };
  auto text = [&](const char* key, const std::string& def) {
    const auto it = params.find(key);
    if (it == params.end() || it->is_null()) return def;
    if (!it->is_string()) throw cfg.error(field + "." + key, fmt::format("must be a string, got {}", it->dump()));
    return it->get<std::string>();
  };
  RopeSpec r;
  r.theta = positive("rope_theta", default_theta);
  r.type = text("rope_type", text("type", "default"));
  const double partial = positive("partial_rotary_factor", cfg.get_or<double>("partial_rotary_factor", 1.0));
  if (!std::isfinite(partial) || partial <= 0 || partial > 1)
    throw cfg.error("partial_rotary_factor", fmt::format("must be in (0, 1], got {}", partial));
  r.rot_dim = static_cast<int64_t>(static_cast<double>(head_dim) * partial);
  if (r.rot_dim <= 0 || r.rot_dim % 2 || r.rot_dim > head_dim)
    throw cfg.error("partial_rotary_factor", "gives an invalid rotary dimension");
  const int64_t half = r.rot_dim / 2;
  r.inv_freq.resize(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i)  // as HF: 1 / theta^(2i / dim), computed in f32
    r.inv_freq[i] = static_cast<float>(1.0 / std::pow(r.theta, static_cast<double>(static_cast<float>(2 * i) /
                                                                                   static_cast<float>(r.rot_dim))));
  if (r.type == "default") {
  } else if (r.type == "linear") {
    const double factor = positive("factor", 1.0);
    for (auto& f : r.inv_freq) f = static_cast<float>(f / factor);
  } else if (r.type == "llama3") {
    // Llama 3.1: keep high frequencies, divide low ones by factor, interpolate smoothly between.
    const double factor = positive("factor", 8.0), low = positive("low_freq_factor", 1.0),
                 high = positive("high_freq_factor", 4.0),
                 old_ctx = positive("original_max_position_embeddings", 8192);
    if (high <= low) throw cfg.error(field + ".high_freq_factor", "must be greater than low_freq_factor");
    const double low_wavelen = old_ctx / low, high_wavelen = old_ctx / high;
    for (auto& f : r.inv_freq) {
      const double wavelen = 2.0 * std::numbers::pi / f;
      if (wavelen > low_wavelen) {
        f = static_cast<float>(f / factor);
      } else if (wavelen >= high_wavelen) {
        const double smooth = (old_ctx / wavelen - low) / (high - low);
        f = static_cast<float>((1.0 - smooth) * f / factor + smooth * f);
      }
    }
  } else {
    throw cfg.unsupported(field, fmt::format("rope_type '{}' is not supported (default, linear, llama3 are)", r.type));
  }
  return r;
}

ExpertTensorNames expert_tensor_names(const WeightNames& n, const WeightStore& store, const std::string& layer_prefix,
                                      int64_t expert) {
  const std::string stacked = layer_prefix + n.stacked_experts + ".";
  if (store.contains(stacked + n.stacked_gate + ".weight"))
    return {stacked + n.stacked_gate, stacked + n.stacked_up, stacked + n.stacked_down, true};
  const std::string base = fmt::format("{}{}.{}.", layer_prefix, n.experts, expert);
  return {base + n.gate, base + n.up, base + n.down, false};
}

std::optional<std::vector<bool>> parse_layer_types(ConfigReader& cfg, int64_t n_layers) {
  const nlohmann::json* types = cfg.find("layer_types");
  if (!types) return std::nullopt;
  if (!types->is_array() || static_cast<int64_t>(types->size()) != n_layers)
    throw cfg.error("layer_types", fmt::format("must list one type per layer ({} layers), got {}", n_layers,
                                               types->is_array() ? std::to_string(types->size()) + " entries"
                                                                 : types->type_name()));
  std::vector<bool> sliding;
  for (const auto& t : *types) {
    if (!t.is_string() || (t != "sliding_attention" && t != "full_attention"))
      throw cfg.unsupported("layer_types", fmt::format("layer type {} is not supported (sliding_attention, "
                                                       "full_attention are)", t.dump()));
    sliding.push_back(t == "sliding_attention");
  }
  return sliding;
}

void parse_moe(ConfigReader& cfg, ModelSpec& spec) {
  spec.n_experts = cfg.require_any<int64_t>({"num_experts", "num_local_experts"});
  spec.top_k = cfg.get<int64_t>("num_experts_per_tok");
  if (spec.n_experts <= 0 || spec.n_experts > (int64_t{1} << 16) || spec.top_k <= 0 || spec.top_k > spec.n_experts)
    throw cfg.error("num_experts_per_tok", fmt::format("top-{} of {} experts is invalid", spec.top_k, spec.n_experts));
}

}  // namespace lmlab
