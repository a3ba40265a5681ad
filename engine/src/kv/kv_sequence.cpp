#include "kv/kv_sequence.h"

#include "kv/prompt_cache.h"

namespace lmlab {

uint64_t KvSequence::bytes() const {
  uint64_t b = 0;
  for (const auto& l : layers) b += l->bytes();
  return b;
}

bool KvSequence::can_truncate(int64_t n) const {
  for (const auto& l : layers)
    if (!l->can_truncate(n)) return false;
  return true;
}

bool KvSequence::shareable() const {
  for (const auto& l : layers)
    if (!l->shareable()) return false;
  return true;
}

int64_t KvSequence::adopt_prefix(PromptCache& cache, std::span<const int32_t> prompt, int64_t limit) {
  if (!shareable() || n_tokens() != 0) return 0;
  PromptCache::Hit hit = cache.lookup(prompt, limit);
  if (hit.n_tokens == 0) return 0;
  for (size_t l = 0; l < layers.size(); ++l) layers[l]->adopt(std::move(hit.layers[l]), hit.n_tokens);
  return hit.n_tokens;
}

void KvSequence::publish(PromptCache& cache, std::span<const int32_t> tokens) const {
  if (!shareable()) return;
  std::vector<const std::vector<std::shared_ptr<KvBlock>>*> tables;
  for (const auto& l : layers) tables.push_back(&l->blocks());
  cache.insert(tokens, n_tokens(), tables);
}

}  // namespace lmlab
