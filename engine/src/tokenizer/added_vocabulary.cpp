// Added-token extraction (see added_vocabulary.h), following `tokenizers`' AddedVocabulary::find_matches:
// non-overlapping leftmost-longest matches; a single_word token only matches between non-word
// characters; lstrip extends the match over the whitespace before it (never into the previous match),
// rstrip over the whitespace after it.
#include "tokenizer/added_vocabulary.h"

#include <algorithm>

#include "text/unicode.h"

namespace lmlab::tok {

void TokenTrie::insert(std::string_view key, int32_t value) {
  if (key.empty()) return;
  int32_t node = 0;
  for (size_t i = 0; i < key.size(); ++i) {
    const auto byte = static_cast<unsigned char>(key[i]);
    auto& children = nodes_[static_cast<size_t>(node)].children;
    const auto it = std::lower_bound(children.begin(), children.end(), byte,
                                     [](const auto& c, unsigned char b) { return c.first < b; });
    if (it != children.end() && it->first == byte) {
      node = it->second;
      continue;
    }
    const auto child = static_cast<int32_t>(nodes_.size());
    children.insert(it, {byte, child});
    nodes_.push_back(Node{});  // invalidates `children`, which is not used again
    if (node == 0) root_[byte] = child;
    node = child;
  }
  nodes_[static_cast<size_t>(node)].value = value;
}

std::optional<std::pair<int32_t, size_t>> TokenTrie::longest_at(std::string_view text, size_t pos) const {
  int32_t node = root_[static_cast<unsigned char>(text[pos])];
  if (node == 0) return std::nullopt;
  std::optional<std::pair<int32_t, size_t>> best;
  size_t len = 1;
  while (true) {
    const Node& n = nodes_[static_cast<size_t>(node)];
    if (n.value >= 0) best = std::make_pair(n.value, len);
    if (pos + len >= text.size()) break;
    const auto byte = static_cast<unsigned char>(text[pos + len]);
    const auto it = std::lower_bound(n.children.begin(), n.children.end(), byte,
                                     [](const auto& c, unsigned char b) { return c.first < b; });
    if (it == n.children.end() || it->first != byte) break;
    node = it->second;
    ++len;
  }
  return best;
}

void AddedVocabulary::load(const json& v, const JsonCtx& ctx, const BpeModel& model, const Normalizer* normalizer) {
  if (!v.is_array()) ctx.fail(ErrorKind::model_format, "must be an array");
  for (size_t i = 0; i < v.size(); ++i) {
    const JsonCtx tctx = ctx.at(i);
    const json& e = require_object(v[i], tctx);
    AddedToken t;
    t.content = get_string(e, "content", tctx);
    if (t.content.empty()) tctx.at("content").fail(ErrorKind::model_format, "must not be empty");
    if (!utf8_valid(t.content)) tctx.at("content").fail(ErrorKind::model_format, "is not valid UTF-8");
    const int64_t id = get_int_or(e, "id", -1, tctx);
    if (id < 0 || id >= (int64_t{1} << 26)) tctx.at("id").fail(ErrorKind::model_format, "must be in [0, 2^26)");
    // `tokenizers` gives a token that the model already knows the model's id.
    t.id = model.token_to_id(t.content).value_or(static_cast<int32_t>(id));
    t.single_word = get_bool_or(e, "single_word", false, tctx);
    t.lstrip = get_bool_or(e, "lstrip", false, tctx);
    t.rstrip = get_bool_or(e, "rstrip", false, tctx);
    t.special = get_bool_or(e, "special", false, tctx);
    t.normalized = get_bool_or(e, "normalized", !t.special, tctx);
    tokens_.push_back(std::move(t));
  }
  for (size_t k = 0; k < tokens_.size(); ++k) {
    const AddedToken& t = tokens_[k];
    by_id_[t.id] = k;
    by_content_[t.content] = t.id;
    if (t.special) special_.insert(t.content);
    max_id_ = std::max(max_id_, t.id);
    if (t.normalized) {
      normalized_trie_.insert(normalizer != nullptr ? normalizer->normalize(t.content) : t.content,
                              static_cast<int32_t>(k));
    } else {
      raw_trie_.insert(t.content, static_cast<int32_t>(k));
    }
  }
}

const std::string* AddedVocabulary::id_to_token(int32_t id) const {
  const auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &tokens_[it->second].content;
}

std::optional<int32_t> AddedVocabulary::token_to_id(std::string_view token) const {
  const auto it = by_content_.find(token);
  if (it == by_content_.end()) return std::nullopt;
  return it->second;
}

namespace {

// Byte offset where the whitespace at the end of `s` begins (s.size() when there is none).
size_t trailing_space_start(std::string_view s) {
  size_t end = s.size();
  while (end > 0) {
    size_t start = end - 1;
    while (start > 0 && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
    size_t i = start;
    if (!is_whitespace(utf8_next(s, i))) break;
    end = start;
  }
  return end;
}

size_t leading_space_len(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    size_t next = i;
    if (!is_whitespace(utf8_next(s, next))) break;
    i = next;
  }
  return i;
}

bool is_word_char(char32_t c) { return c == '_' || is_alphanumeric(c); }

bool ends_with_word(std::string_view s) {
  if (s.empty()) return false;
  size_t start = s.size() - 1;
  while (start > 0 && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
  return is_word_char(utf8_next(s, start));
}

bool starts_with_word(std::string_view s) {
  if (s.empty()) return false;
  size_t i = 0;
  return is_word_char(utf8_next(s, i));
}

}  // namespace

void AddedVocabulary::split(std::vector<Piece>& pieces, const TokenTrie& trie) const {
  if (trie.empty()) return;
  std::vector<Piece> out;
  out.reserve(pieces.size());
  for (Piece& p : pieces) {
    if (p.added_id >= 0) {
      out.push_back(std::move(p));
      continue;
    }
    const std::string_view text = p.text;
    auto push_text = [&](size_t b, size_t e) {
      out.push_back(Piece{std::string(text.substr(b, e - b)), -1, p.at_start && b == 0});
    };
    const size_t first_out = out.size();
    size_t start_offset = 0;
    size_t pos = 0;
    while (pos < text.size()) {
      const auto m = trie.longest_at(text, pos);
      if (!m) {
        ++pos;
        continue;
      }
      const AddedToken& t = tokens_[static_cast<size_t>(m->first)];
      size_t start = pos, stop = pos + m->second;
      pos = stop;  // matching resumes after the raw match, whatever lstrip/rstrip do
      if (t.single_word) {
        const bool space_before = start == 0 || !ends_with_word(text.substr(0, start));
        const bool space_after = stop == text.size() || !starts_with_word(text.substr(stop));
        if (!space_before || !space_after) continue;
      }
      if (t.lstrip) start = std::max(trailing_space_start(text.substr(0, start)), start_offset);
      if (t.rstrip) stop += leading_space_len(text.substr(stop));
      if (start > start_offset) push_text(start_offset, start);
      out.push_back(Piece{std::string(), t.id, false});
      start_offset = stop;
    }
    if (out.size() == first_out) {  // no match: keep the piece as it is
      out.push_back(std::move(p));
      continue;
    }
    if (start_offset < text.size()) push_text(start_offset, text.size());
  }
  pieces.swap(out);
}

std::vector<Piece> AddedVocabulary::extract_and_normalize(std::string_view text, const Normalizer* normalizer) const {
  std::vector<Piece> pieces;
  if (text.empty()) return pieces;
  pieces.push_back(Piece{std::string(text), -1, true});
  split(pieces, raw_trie_);
  for (Piece& p : pieces)
    if (p.added_id < 0 && normalizer != nullptr) p.text = normalizer->normalize(std::move(p.text));
  std::erase_if(pieces, [](const Piece& p) { return p.added_id < 0 && p.text.empty(); });
  split(pieces, normalized_trie_);
  std::erase_if(pieces, [](const Piece& p) { return p.added_id < 0 && p.text.empty(); });
  return pieces;
}

}  // namespace lmlab::tok
