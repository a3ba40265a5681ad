// Model loading and Session: chunked appends over the shared transformer.
#include "lmlab/model.h"

#include <fmt/format.h>

#include "arch/registry.h"
#include "lmlab/error.h"
#include "model/model_impl.h"
#include "util/thread_pool.h"

namespace lmlab {

Model::Model(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Model::~Model() = default;

std::shared_ptr<Model> Model::load(const std::filesystem::path& dir, const ModelOptions& options) {
  if (options.device != Device::cpu)
    throw Error(ErrorKind::unsupported, "--device", "this build has only the CPU backend");
  if (options.prefill_size <= 0) throw Error(ErrorKind::invalid_input, "--prefill-size", "must be positive");
  if (options.threads > 0 && options.threads != ThreadPool::global().size())
    ThreadPool::set_global_threads(options.threads);
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  ModelSpec spec = load_model_spec(dir.string());
  WeightStore store = WeightStore::open_dir(dir);
  impl->transformer = std::make_unique<Transformer>(std::move(spec), std::move(store));
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

struct Session::State {
  KvCache cache;
  std::vector<int32_t> tokens;
  std::vector<float> logits, chunk_logits;
};

Session::Session(const Model& model) : model_(&model) {
  const auto& s = model.impl().transformer->spec();
  state_ = std::make_unique<State>(State{KvCache(s.n_layers, s.n_kv_heads, s.head_dim), {}, {}, {}});
}
Session::~Session() = default;

std::span<const float> Session::append(std::span<const int32_t> tokens, bool all_logits) {
  const auto& impl = model_->impl();
  const int64_t n = static_cast<int64_t>(tokens.size());
  const int64_t ctx = impl.info.ctx_size, vocab = impl.info.vocab;
  if (n == 0) throw Error(ErrorKind::invalid_input, "tokens", "nothing to append");
  if (n_past() + n > ctx)
    throw Error(ErrorKind::invalid_input, "prompt",
                fmt::format("{} tokens after {} in context exceed the context size {} (--ctx-size)", n, n_past(), ctx));
  const int64_t chunk = impl.options.prefill_size;
  auto& st = *state_;
  st.logits.clear();
  const int64_t start = n_past();
  try {
    for (int64_t off = 0; off < n; off += chunk) {
      const int64_t m = std::min(chunk, n - off);
      const bool last_chunk = off + m == n;
      impl.transformer->forward(tokens.subspan(off, m), start + off, st.cache, all_logits, st.chunk_logits);
      if (all_logits) st.logits.insert(st.logits.end(), st.chunk_logits.begin(), st.chunk_logits.end());
      else if (last_chunk) st.logits.swap(st.chunk_logits);
    }
  } catch (...) {
    st.cache.truncate(start);  // leave the session as it was
    throw;
  }
  st.tokens.insert(st.tokens.end(), tokens.begin(), tokens.end());
  return {st.logits.data(), static_cast<size_t>(all_logits ? n * vocab : vocab)};
}

int64_t Session::n_past() const { return static_cast<int64_t>(state_->tokens.size()); }
std::span<const int32_t> Session::tokens() const { return state_->tokens; }
void Session::truncate(int64_t n) {
  if (n < 0 || n > n_past()) throw Error(ErrorKind::invalid_input, "truncate", "position out of range");
  state_->tokens.resize(static_cast<size_t>(n));
  state_->cache.truncate(n);
}
uint64_t Session::kv_bytes() const { return state_->cache.bytes(); }

}  // namespace lmlab
