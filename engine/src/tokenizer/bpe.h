// The BPE model of tokenizer.json ("model": {"type": "BPE"}): vocabulary, ranked merges, unknown-token
// and byte-fallback handling, continuing_subword_prefix / end_of_word_suffix, ignore_merges.
// Why a priority queue: each word is merged lowest rank first (ties: leftmost) over a linked list of
// symbols, O(n log n) per word instead of rescanning all pairs per merge; a word -> ids cache makes
// repeated words (most of any text) a hash lookup.
// Invariants: merges_ maps (left id, right id) -> (rank, merged id) and every id in it is in the vocab;
// tokenize() is thread-safe (the cache is guarded by a mutex).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/json_fields.h"

namespace lmlab::tok {

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
template <class V>
using StringMap = std::unordered_map<std::string, V, StringHash, std::equal_to<>>;

class BpeModel {
 public:
  // `v` is the "model" object; throws lmlab::Error naming the field at fault.
  static std::unique_ptr<BpeModel> from_json(const json& v, const JsonCtx& ctx);

  // Appends the ids of one pre-tokenized word.
  void tokenize(std::string_view word, std::vector<int32_t>& out) const;

  std::optional<int32_t> token_to_id(std::string_view token) const;
  const std::string* id_to_token(int32_t id) const;  // nullptr when the id is not in the vocabulary
  int32_t max_id() const { return static_cast<int32_t>(id_to_token_.size()) - 1; }

 private:
  struct MergeInfo {
    uint32_t rank;
    int32_t new_id;
  };
  static uint64_t pair_key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  void merge_word(std::string_view word, std::vector<int32_t>& out) const;

  StringMap<int32_t> vocab_;
  std::vector<std::string> id_to_token_;
  std::vector<uint8_t> has_id_;
  std::unordered_map<uint64_t, MergeInfo> merges_;
  std::optional<int32_t> unk_id_;
  bool fuse_unk_ = false;
  bool byte_fallback_ = false;
  bool ignore_merges_ = false;
  std::string prefix_;                   // continuing_subword_prefix
  std::string suffix_;                   // end_of_word_suffix
  std::array<int32_t, 256> byte_ids_{};  // id of "<0xXX>" or -1

  static constexpr int64_t kMaxTokenId = int64_t{1} << 26;  // the id -> token table is dense
  static constexpr size_t kCacheMaxWordBytes = 256;
  static constexpr size_t kCacheMaxEntries = 1 << 16;
  mutable std::mutex cache_mu_;
  mutable StringMap<std::vector<int32_t>> cache_;
};

}  // namespace lmlab::tok
