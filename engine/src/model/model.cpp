// Model loading and Session: chunked appends over the shared transformer.
#include "lmlab/model.h"

#include <fmt/format.h>

#include "arch/registry.h"
#include "lmlab/error.h"
#include "lmlab/kv_storage.h"
#include "experts/expert_streamer.h"
#include "kv/turboquant/tq_layer_spec.h"
#include "config/context_size.h"
#include "model/backend_factory.h"
#include "model/model_impl.h"
#include "util/thread_pool.h"

namespace lmlab {

namespace {
std::vector<KvLayerSpec> kv_layer_specs(const ModelSpec& s, const ModelOptions& options, int64_t device_layers);
}  // namespace

Model::Model(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Model::~Model() = default;

std::shared_ptr<Model> Model::load(const std::filesystem::path& dir, const ModelOptions& given) {
  validate_options(given);
  ModelOptions options = given;  // with what 0 means resolved where every reader of the model's options sees it
  options.prefill_size = effective_prefill_size(given.prefill_size, given.device);
  if (options.threads > 0 && options.threads != ThreadPool::global().size())
    ThreadPool::set_global_threads(options.threads);
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  ModelSpec spec = load_model_spec(dir.string());
  WeightStore store = WeightStore::open_dir(dir);
  TransformerOptions topts;
  topts.stream_experts = options.stream_experts;
  topts.experts.expert_cache_bytes = static_cast<uint64_t>(options.expert_cache_mb) << 20;  // 0: the default
  topts.experts.expert_queue_depth = options.expert_queue_depth;
  topts.experts.expert_predict_next = options.expert_predict_next;
  topts.experts.expert_cache_policy = parse_cache_policy(options.expert_cache_policy);
  impl->transformer = std::make_unique<Transformer>(std::move(spec), std::move(store), topts);
  impl->backend = make_backend(options, *impl->transformer);
  const ModelSpec& s = impl->transformer->spec();
  if (std::filesystem::exists(dir / "tokenizer.json")) impl->tokenizer = Tokenizer::from_file(dir / "tokenizer.json");

  ModelInfo& i = impl->info;
  i.arch = s.arch;
  i.dir = dir;
  i.vocab = s.vocab;
  i.hidden = s.hidden;
  i.n_layers = s.n_layers;
  i.n_heads = s.n_heads;
  i.n_kv_heads = s.n_kv_heads;
  i.head_dim = s.head_dim;
  i.n_experts = s.n_experts;
  i.top_k = s.top_k;
  i.max_positions = s.max_positions;
  i.ctx_size = resolve_ctx_size(options.ctx_size, s);
  i.weight_bytes = impl->transformer->weight_bytes();
  i.weight_format = s.quant.bits ? fmt::format("q{}g{}", s.quant.bits, s.quant.group_size)
                                 : std::string(dtype_name(impl->transformer->store().require(
                                                   "model.embed_tokens.weight").info->dtype));
  i.bos_id = s.bos_id;
  i.eos_ids = s.eos_ids;
  i.ignored_config_keys = s.ignored_config_keys;
  for (const auto& l : s.layers) i.layer_windows.push_back(l.window);
  i.device_layers = impl->backend->device_layers();
  i.device_plan = impl->backend->device_plan();

  impl->kv_pool = std::make_unique<KvBlockPool>(options.kv_block_tokens, static_cast<uint64_t>(options.kv_budget_mb) << 20);
  if (auto device_kv = impl->backend->kv_allocator())
    impl->device_kv_pool = std::make_unique<KvBlockPool>(options.kv_block_tokens,
                                                         static_cast<uint64_t>(options.kv_budget_mb) << 20, device_kv);
  impl->kv_specs = kv_layer_specs(s, options, impl->backend->device_layers());
  if (options.prompt_cache_mb > 0)
    impl->prompt_cache = std::make_unique<PromptCache>(options.kv_block_tokens,
                                                       static_cast<uint64_t>(options.prompt_cache_mb) << 20,
                                                       i.layer_windows);
  return std::make_shared<Model>(std::move(impl));
}

const ModelInfo& Model::info() const { return impl_->info; }
const ModelOptions& Model::options() const { return impl_->options; }
bool Model::has_tokenizer() const { return impl_->tokenizer.has_value(); }
const Tokenizer& Model::tokenizer() const {
  if (!impl_->tokenizer)
    throw Error(ErrorKind::model_format, impl_->info.dir.string(), "the model directory has no tokenizer.json");
  return *impl_->tokenizer;
}
std::unique_ptr<Session> Model::new_session() const { return std::make_unique<Session>(*this); }

ModelCounters Model::counters() const {
  ModelCounters c;
  c.kv_cache_bytes = impl_->kv_pool->allocated_bytes();
  c.kv_cache_peak_bytes = impl_->kv_pool->peak_bytes();
  if (const KvBlockPool* device = impl_->device_kv_pool.get()) {
    c.kv_cache_bytes += device->allocated_bytes();
    c.kv_cache_peak_bytes += device->peak_bytes();  // an upper bound when both pools are used (--gpu-layers)
  }
  if (impl_->prompt_cache) {
    const auto st = impl_->prompt_cache->stats();
    c.prompt_cache_bytes = st.bytes;
    c.prompt_cache_entries = st.nodes;
    c.prompt_cache_lookups = st.lookups;
    c.prompt_cache_hits = st.hits;
    c.prompt_cache_hit_tokens = st.hit_tokens;
    c.prompt_cache_evictions = st.evictions;
  }
  const DeviceMemory dm = impl_->backend->memory();
  c.device_memory_bytes = dm.current_bytes;
  c.device_memory_peak_bytes = dm.peak_bytes;
  const DeviceDecodeTime dt = impl_->backend->decode_time();
  c.device_decode_steps = dt.steps;
  c.device_decode_ns = dt.ns;
  if (const ExpertStreamer* es = impl_->transformer->streamer()) {
    c.stream = es->counters();
    impl_->backend->add_stream_counters(c.stream);
  }
  return c;
}

namespace {
// Full-attention layers store --kv-mode's codec; sliding-window layers stay f32 (they are small by construction).
// Device layers store f16 rows in the f32 and f16 modes (kv_mode_stored, which the reports' labels read too) and on
// window layers; their full-attention layers store the compressed modes' records as the CPU would (the same spec,
// encoded and attended by the device kernels), except with a hot window, whose exact rows live on the host (an
// unsupported error naming --kv-hot-window).
std::vector<KvLayerSpec> kv_layer_specs(const ModelSpec& s, const ModelOptions& options, int64_t device_layers) {
  const KvGeometry geo{s.n_heads, s.n_kv_heads, s.head_dim};
  const bool compressed = options.kv_mode != KvMode::f32 && options.kv_mode != KvMode::f16;
  if (device_layers > 0 && compressed && options.kv_hot_window > 0)
    throw Error(ErrorKind::unsupported, std::string(option_flag("kv_hot_window")),
                fmt::format("{} KV with a hot window is not on the GPU: use {} 0 with --device cuda",
                            kv_mode_name(options.kv_mode), option_flag("kv_hot_window")));
  auto device_f16_spec = [&](int64_t window) {
    TurboKvOptions f16;
    f16.mode = TurboKvOptions::Mode::f16;
    KvLayerSpec spec = turbo_kv_layer_spec(geo, f16);
    spec.window = window;
    return spec;
  };
  TurboKvOptions turbo;
  turbo.mode = options.kv_mode == KvMode::affine4   ? TurboKvOptions::Mode::affine4
               : options.kv_mode == KvMode::affine8 ? TurboKvOptions::Mode::affine8
               : options.kv_mode == KvMode::f16     ? TurboKvOptions::Mode::f16
                                                    : TurboKvOptions::Mode::turbo;
  turbo.k_bits = options.kv_k_bits;
  turbo.k_qjl = options.kv_k_qjl;
  turbo.v_bits = options.kv_v_bits;
  turbo.hot_window = options.kv_hot_window;
  const uint64_t base_seed = turbo.seed;
  const bool device_stores_f16 = kv_mode_stored(options.kv_mode, Device::cuda) == KvMode::f16;
  std::vector<KvLayerSpec> specs;
  for (size_t i = 0; i < s.layers.size(); ++i) {
    const auto& l = s.layers[i];
    turbo.seed = base_seed + i;  // independent rotations per layer
    if (static_cast<int64_t>(i) < device_layers && (device_stores_f16 || l.window != 0))
      specs.push_back(device_f16_spec(l.window));
    else if (options.kv_mode != KvMode::f32 && l.window == 0) specs.push_back(turbo_kv_layer_spec(geo, turbo));
    else specs.push_back(f32_kv_layer_spec(geo, l.window));
  }
  return specs;
}
}  // namespace

KvSequence Model::Impl::make_sequence() const {
  KvSequence seq;
  const int64_t device_layers = backend->device_layers();
  for (size_t i = 0; i < kv_specs.size(); ++i) {
    KvBlockPool& pool = static_cast<int64_t>(i) < device_layers ? *device_kv_pool : *kv_pool;
    seq.layers.push_back(std::make_unique<KvLayerBlocked>(pool, kv_specs[i]));
  }
  return seq;
}

struct Session::State {
  KvSequence cache;
  std::vector<int32_t> tokens;
  std::vector<float> logits, chunk_logits;
};

Session::Session(const Model& model) : model_(&model) {
  state_ = std::make_unique<State>();
  state_->cache = model.impl().make_sequence();
}

Session::~Session() = default;

void Session::check_append(std::span<const int32_t> tokens) const {
  const auto& impl = model_->impl();
  const int64_t n = static_cast<int64_t>(tokens.size());
  const int64_t ctx = impl.info.ctx_size, vocab = impl.info.vocab;
  if (n == 0) throw Error(ErrorKind::invalid_input, "tokens", "nothing to append");
  if (n_past() + n > ctx)
    throw Error(ErrorKind::invalid_input, "prompt",
                fmt::format("{} tokens after {} in context exceed the context size {} (--ctx-size)", n, n_past(), ctx));
  for (int32_t id : tokens)
    if (id < 0 || id >= vocab)
      throw Error(ErrorKind::invalid_input, "tokens", fmt::format("token id {} is outside the vocabulary [0, {})", id, vocab));
}

// Leave the session as it was (or empty, if a sliding window already released what it needed).
void Session::restore(int64_t n_past) {
  if (state_->cache.can_truncate(n_past)) state_->cache.truncate(n_past);
  else reset();
}

std::span<const float> Session::append(std::span<const int32_t> tokens, bool all_logits) {
  check_append(tokens);
  const auto& impl = model_->impl();
  const int64_t n = static_cast<int64_t>(tokens.size()), vocab = impl.info.vocab;
  const int64_t chunk = impl.backend->prompt_span(impl.options.prefill_size, all_logits);
  auto& st = *state_;
  st.logits.clear();
  const int64_t start = n_past();
  try {
    for (int64_t off = 0; off < n; off += chunk) {
      const int64_t m = std::min(chunk, n - off);
      const bool last_chunk = off + m == n;
      impl.backend->forward(tokens.subspan(off, m), start + off, st.cache, all_logits, st.chunk_logits);
      if (all_logits) st.logits.insert(st.logits.end(), st.chunk_logits.begin(), st.chunk_logits.end());
      else if (last_chunk) st.logits.swap(st.chunk_logits);
    }
  } catch (...) {
    restore(start);
    throw;
  }
  st.tokens.insert(st.tokens.end(), tokens.begin(), tokens.end());
  return {st.logits.data(), static_cast<size_t>(all_logits ? n * vocab : vocab)};
}

std::vector<std::span<const float>> Model::append_batch(std::span<const BatchAppend> entries) const {
  std::vector<SequenceStep> steps;
  for (const BatchAppend& e : entries) {
    if (!e.session || &e.session->model() != this)
      throw Error(ErrorKind::invalid_input, "append_batch", "every session must be a session of this model");
    for (const SequenceStep& st : steps)
      if (st.cache == &e.session->state_->cache)
        throw Error(ErrorKind::invalid_input, "append_batch", "a session appears twice in one step");
    e.session->check_append(e.tokens);
    steps.push_back({e.tokens, e.session->n_past(), &e.session->state_->cache});
  }
  std::vector<float> logits;
  try {
    impl_->backend->forward_batch(steps, logits);
  } catch (...) {
    for (size_t i = 0; i < entries.size(); ++i) entries[i].session->restore(steps[i].pos0);
    throw;
  }
  const size_t vocab = static_cast<size_t>(impl_->info.vocab);
  std::vector<std::span<const float>> out;
  for (size_t i = 0; i < entries.size(); ++i) {
    Session::State& st = *entries[i].session->state_;
    st.logits.assign(logits.begin() + i * vocab, logits.begin() + (i + 1) * vocab);
    st.tokens.insert(st.tokens.end(), entries[i].tokens.begin(), entries[i].tokens.end());
    out.emplace_back(st.logits.data(), vocab);
  }
  return out;
}

int64_t Session::n_past() const { return static_cast<int64_t>(state_->tokens.size()); }
std::span<const int32_t> Session::tokens() const { return state_->tokens; }
void Session::truncate(int64_t n) {
  if (n < 0 || n > n_past()) throw Error(ErrorKind::invalid_input, "truncate", "position out of range");
  if (!state_->cache.can_truncate(n)) throw Error(ErrorKind::invalid_input, "truncate", "a sliding window already released position " + std::to_string(n));
  state_->tokens.resize(static_cast<size_t>(n));
  state_->cache.truncate(n);
}

void Session::reset() {
  state_->tokens.clear();
  state_->cache = model_->impl().make_sequence();
}

int64_t Session::reuse_prefix(std::span<const int32_t> prompt) {
  const int64_t limit = static_cast<int64_t>(prompt.size()) - 1;  // the last prompt token always runs
  if (limit <= 0) {
    reset();
    return 0;
  }
  if (n_past() > 0) {
    const auto& have = state_->tokens;
    int64_t common = 0;
    while (common < limit && common < n_past() && have[common] == prompt[common]) ++common;
    if (common > 0 && state_->cache.can_truncate(common)) {
      truncate(common);
      return common;
    }
    reset();
  }
  const auto& impl = model_->impl();
  if (!impl.prompt_cache) return 0;
  const int64_t hit = state_->cache.adopt_prefix(*impl.prompt_cache, prompt, limit);
  state_->tokens.assign(prompt.begin(), prompt.begin() + hit);
  return hit;
}

void Session::publish() const {
  const auto& impl = model_->impl();
  if (impl.prompt_cache) state_->cache.publish(*impl.prompt_cache, state_->tokens);
}
uint64_t Session::kv_bytes() const { return state_->cache.bytes(); }

}  // namespace lmlab
