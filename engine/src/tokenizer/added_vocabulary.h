// Added tokens of tokenizer.json ("added_tokens"): literal strings (special or not) that are cut out of
// the input before the model runs, as `tokenizers`' AddedVocabulary does: first tokens with
// normalized=false are matched on the raw text, then each remaining piece is normalized and tokens with
// normalized=true are matched on it. Matching is leftmost-longest; lstrip/rstrip swallow adjacent
// whitespace; single_word requires word boundaries around the match.
// Invariant: pieces returned are non-empty, in input order; added pieces carry their id.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "tokenizer/bpe.h"
#include "tokenizer/normalizer.h"
#include "tokenizer/pre_tokenizer.h"

namespace lmlab::tok {

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = true;
  bool special = false;
};

// A byte trie over token strings finding the leftmost-longest match.
class TokenTrie {
 public:
  void insert(std::string_view key, int32_t value);
  // The longest key starting at text[pos]: {value, length}, or nullopt.
  std::optional<std::pair<int32_t, size_t>> longest_at(std::string_view text, size_t pos) const;
  bool empty() const { return nodes_.size() <= 1; }

 private:
  struct Node {
    std::vector<std::pair<unsigned char, int32_t>> children;  // sorted by byte
    int32_t value = -1;
  };
  std::vector<Node> nodes_{Node{}};
  std::array<int32_t, 256> root_{};  // child of the root per first byte, 0 = none
};

class AddedVocabulary {
 public:
  // `v` is the "added_tokens" array; `model` resolves ids of tokens already in its vocabulary;
  // `normalizer` (may be null) normalizes the patterns of normalized tokens.
  void load(const json& v, const JsonCtx& ctx, const BpeModel& model, const Normalizer* normalizer);

  // Splits `text` into added-token pieces and normalized text pieces.
  std::vector<Piece> extract_and_normalize(std::string_view text, const Normalizer* normalizer) const;

  const std::string* id_to_token(int32_t id) const;
  std::optional<int32_t> token_to_id(std::string_view token) const;
  bool is_special_token(std::string_view token) const { return special_.count(std::string(token)) > 0; }
  int32_t max_id() const { return max_id_; }

 private:
  void split(std::vector<Piece>& pieces, const TokenTrie& trie) const;

  std::vector<AddedToken> tokens_;
  std::unordered_map<int32_t, size_t> by_id_;  // id -> index in tokens_
  StringMap<int32_t> by_content_;
  std::unordered_set<std::string> special_;
  TokenTrie raw_trie_;         // normalized == false, matched on the input
  TokenTrie normalized_trie_;  // normalized == true, matched on normalized pieces
  int32_t max_id_ = -1;
};

}  // namespace lmlab::tok
