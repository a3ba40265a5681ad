#include "kv/prompt_cache.h"

#include <algorithm>


namespace lmlab {

namespace {
constexpr uint64_t kRoot = 0x9e3779b97f4a7c15ull;

uint64_t chain_hash(uint64_t parent, std::span<const int32_t> block) {
  uint64_t h = parent ^ 0xcbf29ce484222325ull;
  for (int32_t t : block) {
    h ^= static_cast<uint32_t>(t);
    h *= 0x100000001b3ull;
    h ^= h >> 29;
  }
  return h == 0 ? 1 : h;
}
}  // namespace

PromptCache::PromptCache(int64_t block_tokens, uint64_t budget_bytes, std::vector<int64_t> layer_windows)
    : block_tokens_(block_tokens), budget_(budget_bytes), windows_(std::move(layer_windows)) {}

uint64_t PromptCache::node_bytes(const Node& n) const {
  uint64_t b = 0;
  for (const auto& blk : n.blocks)
    if (blk) b += blk->bytes;
  return b;
}

PromptCache::Hit PromptCache::lookup(std::span<const int32_t> tokens, int64_t max_tokens) {
  std::lock_guard<std::mutex> lock(mu_);
  ++stats_.lookups;
  const int64_t B = block_tokens_;
  std::vector<Node*> path;
  uint64_t h = kRoot;
  for (int64_t i = 0; (i + 1) * B <= std::min<int64_t>(max_tokens, static_cast<int64_t>(tokens.size())); ++i) {
    auto block = tokens.subspan(i * B, B);
    const uint64_t child = chain_hash(h, block);
    auto it = nodes_.find(child);
    if (it == nodes_.end() || it->second.parent != h || !std::equal(block.begin(), block.end(), it->second.tokens.begin()))
      break;
    path.push_back(&it->second);
    h = child;
  }
  // The longest prefix every layer can resume from: each layer needs the blocks its next query can see.
  int64_t n_blocks = static_cast<int64_t>(path.size());
  auto resumable = [&](int64_t nb) {
    const int64_t m = nb * B;
    for (size_t l = 0; l < windows_.size(); ++l) {
      const int64_t first = windows_[l] > 0 ? std::max<int64_t>(0, m - windows_[l] + 1) / B : 0;
      for (int64_t b = first; b < nb; ++b)
        if (!path[b]->blocks[l]) return false;
    }
    return true;
  };
  while (n_blocks > 0 && !resumable(n_blocks)) --n_blocks;
  Hit hit;
  hit.n_tokens = n_blocks * B;
  hit.layers.resize(windows_.size());
  ++clock_;
  for (int64_t b = 0; b < n_blocks; ++b) path[b]->last_used = clock_;
  for (size_t l = 0; l < windows_.size(); ++l) {
    hit.layers[l].resize(static_cast<size_t>(n_blocks));
    const int64_t first = windows_[l] > 0 ? std::max<int64_t>(0, hit.n_tokens - windows_[l] + 1) / B : 0;
    for (int64_t b = first; b < n_blocks; ++b) hit.layers[l][b] = path[b]->blocks[l];
  }
  if (hit.n_tokens > 0) {
    ++stats_.hits;
    stats_.hit_tokens += static_cast<uint64_t>(hit.n_tokens);
  }
  return hit;
}

void PromptCache::insert(std::span<const int32_t> tokens, int64_t n_tokens,
                         const std::vector<const std::vector<std::shared_ptr<KvBlock>>*>& layers) {
  if (budget_ == 0) return;
  std::lock_guard<std::mutex> lock(mu_);
  const int64_t B = block_tokens_;
  const int64_t full = std::min<int64_t>(static_cast<int64_t>(tokens.size()), layers.empty() ? 0 : n_tokens) / B;
  uint64_t h = kRoot;
  ++clock_;
  for (int64_t i = 0; i < full; ++i) {
    auto block = tokens.subspan(i * B, B);
    const uint64_t child = chain_hash(h, block);
    auto it = nodes_.find(child);
    if (it != nodes_.end() && (it->second.parent != h || !std::equal(block.begin(), block.end(), it->second.tokens.begin())))
      return;  // hash collision with another prefix: stop rather than mix them
    if (it == nodes_.end()) {
      Node n;
      n.parent = h;
      n.depth = i;
      n.tokens.assign(block.begin(), block.end());
      n.blocks.resize(layers.size());
      it = nodes_.emplace(child, std::move(n)).first;
      if (h != kRoot) ++nodes_[h].children;
    }
    Node& n = it->second;
    const uint64_t before = node_bytes(n);
    for (size_t l = 0; l < layers.size(); ++l)
      if (!n.blocks[l] && i < static_cast<int64_t>(layers[l]->size())) n.blocks[l] = (*layers[l])[i];
    stats_.bytes += node_bytes(n) - before;
    n.last_used = clock_;
    h = child;
  }
  stats_.nodes = nodes_.size();
  evict_to_budget();
}

void PromptCache::evict_to_budget() {
  while (stats_.bytes > budget_ && !nodes_.empty()) {
    auto victim = nodes_.end();
    for (auto it = nodes_.begin(); it != nodes_.end(); ++it)
      if (it->second.children == 0 && (victim == nodes_.end() || it->second.last_used < victim->second.last_used))
        victim = it;
    if (victim == nodes_.end()) break;
    stats_.bytes -= node_bytes(victim->second);
    if (victim->second.parent != kRoot) {
      auto p = nodes_.find(victim->second.parent);
      if (p != nodes_.end()) --p->second.children;
    }
    nodes_.erase(victim);
    ++stats_.evictions;
  }
  stats_.nodes = nodes_.size();
}

PromptCache::Stats PromptCache::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

void PromptCache::clear() {
  std::lock_guard<std::mutex> lock(mu_);
  nodes_.clear();
  stats_.bytes = 0;
  stats_.nodes = 0;
}

}  // namespace lmlab
