// Model loading and Session: chunked appends over the shared transformer.
#include "lmlab/model.h"

#include <fmt/format.h>

#include "arch/registry.h"
#include "lmlab/error.h"
#include "experts/expert_layout.h"
#include "experts/expert_streamer.h"
#include "kv/kv_layer_paged.h"
#include "kv/turboquant/kv_layer_turbo.h"
#include "model/model_impl.h"
#include "util/thread_pool.h"

namespace lmlab {

Model::Model(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Model::~Model() = default;

std::shared_ptr<Model> Model::load(const std::filesystem::path& dir, const ModelOptions& options) {
  if (options.prefill_size <= 0) throw Error(ErrorKind::invalid_input, "--prefill-size", "must be positive");
  if (options.threads > 0 && options.threads != ThreadPool::global().size())
    ThreadPool::set_global_threads(options.threads);
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  ModelSpec spec = load_model_spec(dir.string());
  WeightStore store = WeightStore::open_dir(dir);
  TransformerOptions topts;
  if (options.stream_experts) {
    topts.stream_experts = true;
    topts.expert_queue_depth = options.expert_queue_depth;
    topts.expert_predict_next = options.expert_predict_next;
    topts.expert_cache_policy = options.expert_cache_policy;
    if (options.expert_cache_mb > 0) {
      topts.expert_cache_bytes = static_cast<uint64_t>(options.expert_cache_mb) << 20;
    } else {  // default: a quarter of the experts' bytes
      topts.expert_cache_bytes = ExpertLayout::build(store, spec).total_read_bytes() / 4;
    }
  }
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
  i.ctx_size = options.ctx_size > 0 ? options.ctx_size : s.max_positions;
  i.weight_bytes = impl->transformer->weight_bytes();
  i.weight_format = s.quant.bits ? fmt::format("q{}g{}", s.quant.bits, s.quant.group_size)
                                 : std::string(dtype_name(impl->transformer->store().require(
                                                   "model.embed_tokens.weight").info->dtype));
  i.bos_id = s.bos_id;
  i.eos_ids = s.eos_ids;
  i.ignored_config_keys = s.ignored_config_keys;
  for (const auto& l : s.layers) i.layer_windows.push_back(l.window);

  if (options.kv_block_tokens <= 0) throw Error(ErrorKind::invalid_input, "--kv-block-tokens", "must be positive");
  impl->kv_pool = std::make_unique<KvBlockPool>(options.kv_block_tokens, s.n_kv_heads * s.head_dim,
                                                static_cast<uint64_t>(options.kv_budget_mb) << 20);
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
  c.kv_cache_bytes = impl_->kv_pool->allocated_bytes() + static_cast<uint64_t>(impl_->compressed_kv_bytes.load());
  c.kv_cache_peak_bytes = impl_->kv_pool->peak_bytes();
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
  if (const ExpertStreamer* es = impl_->transformer->streamer()) c.stream = es->counters();
  return c;
}

std::string_view kv_mode_name(KvMode mode) {
  switch (mode) {
    case KvMode::f32: return "f32";
    case KvMode::turbo: return "turbo";
    case KvMode::affine4: return "affine4";
    case KvMode::affine8: return "affine8";
    case KvMode::f16: return "f16";
  }
  return "f32";
}

KvMode kv_mode_from_name(std::string_view name) {
  for (KvMode m : kAllKvModes)
    if (kv_mode_name(m) == name) return m;
  throw Error(ErrorKind::invalid_input, "--kv-mode",
              "unknown KV mode '" + std::string(name) + "' (f32, turbo, affine4, affine8, f16)");
}

KvSequence Model::Impl::make_sequence() const {
  const auto& s = transformer->spec();
  const KvGeometry geo{s.n_heads, s.n_kv_heads, s.head_dim};
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
  KvSequence seq;
  for (size_t i = 0; i < s.layers.size(); ++i) {
    const auto& l = s.layers[i];
    turbo.seed = base_seed + i;  // independent rotations per layer
    if (auto dev = backend->make_kv_layer(static_cast<int64_t>(i), geo)) seq.layers.push_back(std::move(dev));
    else if (options.kv_mode != KvMode::f32 && l.window == 0) seq.layers.push_back(make_turbo_kv_layer(geo, turbo));
    else seq.layers.push_back(std::make_unique<KvLayerPaged>(*kv_pool, geo, l.window));
  }
  return seq;
}

struct Session::State {
  KvSequence cache;
  std::vector<int32_t> tokens;
  std::vector<float> logits, chunk_logits;
  int64_t reported_compressed_bytes = 0;  // this session's share of Model::Impl::compressed_kv_bytes
};

Session::Session(const Model& model) : model_(&model) {
  state_ = std::make_unique<State>();
  state_->cache = model.impl().make_sequence();
}

Session::~Session() {
  model_->impl().compressed_kv_bytes -= state_->reported_compressed_bytes;
}

// Publishes the bytes of this session's compressed layers to the model-wide counter.
void Session::sync_kv_accounting() {
  int64_t b = 0;
  for (const auto& l : state_->cache.layers)
    if (!dynamic_cast<const KvLayerPaged*>(l.get())) b += static_cast<int64_t>(l->bytes());
  model_->impl().compressed_kv_bytes += b - state_->reported_compressed_bytes;
  state_->reported_compressed_bytes = b;
}

std::span<const float> Session::append(std::span<const int32_t> tokens, bool all_logits) {
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
  const int64_t chunk = impl.options.prefill_size;
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
    // Leave the session as it was (or empty, if a sliding window already released what it needed).
    if (can_truncate(start)) st.cache.truncate(start);
    else reset();
    sync_kv_accounting();
    throw;
  }
  sync_kv_accounting();
  st.tokens.insert(st.tokens.end(), tokens.begin(), tokens.end());
  return {st.logits.data(), static_cast<size_t>(all_logits ? n * vocab : vocab)};
}

int64_t Session::n_past() const { return static_cast<int64_t>(state_->tokens.size()); }
std::span<const int32_t> Session::tokens() const { return state_->tokens; }
void Session::truncate(int64_t n) {
  if (n < 0 || n > n_past()) throw Error(ErrorKind::invalid_input, "truncate", "position out of range");
  if (!can_truncate(n)) throw Error(ErrorKind::invalid_input, "truncate", "a sliding window already released position " + std::to_string(n));
  state_->tokens.resize(static_cast<size_t>(n));
  state_->cache.truncate(n);
  sync_kv_accounting();
}

// A sliding-window layer cannot go back to a position whose window blocks it released.
bool Session::can_truncate(int64_t n) const {
  if (n == 0) return true;
  for (const auto& l : state_->cache.layers)
    if (auto* p = dynamic_cast<const KvLayerPaged*>(l.get()); p && p->window() > 0) {
      const int64_t B = model_->options().kv_block_tokens;
      const int64_t first = p->first_needed_position(n) / B, last = (n - 1) / B;
      for (int64_t b = first; b <= last; ++b)
        if (b >= static_cast<int64_t>(p->blocks().size()) || !p->blocks()[b]) return false;
    }
  return true;
}

void Session::reset() {
  state_->tokens.clear();
  state_->cache = model_->impl().make_sequence();
  sync_kv_accounting();
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
    if (common > 0 && can_truncate(common)) {
      truncate(common);
      return common;
    }
    reset();
  }
  const auto& impl = model_->impl();
  if (!impl.prompt_cache) return 0;
  for (const auto& l : state_->cache.layers)
    if (!dynamic_cast<const KvLayerPaged*>(l.get())) return 0;  // compressed layers are not shared (yet)
  PromptCache::Hit hit = impl.prompt_cache->lookup(prompt, limit);
  if (hit.n_tokens == 0) return 0;
  for (size_t l = 0; l < state_->cache.layers.size(); ++l)
    static_cast<KvLayerPaged&>(*state_->cache.layers[l]).adopt(std::move(hit.layers[l]), hit.n_tokens);
  state_->tokens.assign(prompt.begin(), prompt.begin() + hit.n_tokens);
  return hit.n_tokens;
}

void Session::publish() const {
  const auto& impl = model_->impl();
  if (!impl.prompt_cache) return;
  std::vector<const KvLayerPaged*> layers;
  for (const auto& l : state_->cache.layers) {
    auto* p = dynamic_cast<const KvLayerPaged*>(l.get());
    if (!p) return;  // compressed layers are not shared through the prompt cache
    layers.push_back(p);
  }
  impl.prompt_cache->insert(state_->tokens, layers);
}
uint64_t Session::kv_bytes() const { return state_->cache.bytes(); }

}  // namespace lmlab
