// BPE model: loading (vocab, merges as "a b" strings or [a, b] pairs) and per-word merging with the
// exact rules of `tokenizers`' BPE: initial symbols are the word's characters (prefix/suffix added,
// unknown characters -> byte fallback "<0xXX>" tokens, else the unk token, fused when fuse_unk), then
// repeatedly the lowest-ranked adjacent pair is merged (ties: leftmost).
// Invariant: the cache only ever holds results of merge_word for the same model, so hits equal misses.
#include "tokenizer/bpe.h"

#include <algorithm>
#include <climits>
#include <cstdio>
#include <queue>

#include "text/unicode.h"

namespace lmlab::tok {

std::unique_ptr<BpeModel> BpeModel::from_json(const json& v, const JsonCtx& ctx) {
  auto m = std::make_unique<BpeModel>();
  if (const json* d = find_field(v, "dropout")) {
    if (!d->is_number()) ctx.at("dropout").fail(ErrorKind::model_format, "must be a number");
    if (d->get<double>() != 0.0)
      ctx.at("dropout").fail(ErrorKind::unsupported, "> 0 is not supported (inference is deterministic)");
  }
  m->fuse_unk_ = get_bool_or(v, "fuse_unk", false, ctx);
  m->byte_fallback_ = get_bool_or(v, "byte_fallback", false, ctx);
  m->ignore_merges_ = get_bool_or(v, "ignore_merges", false, ctx);
  m->prefix_ = get_string_or(v, "continuing_subword_prefix", "", ctx);
  m->suffix_ = get_string_or(v, "end_of_word_suffix", "", ctx);

  const json& vocab = require_field(v, "vocab", ctx);
  if (!vocab.is_object()) ctx.at("vocab").fail(ErrorKind::model_format, "must be an object {token: id}");
  m->vocab_.reserve(vocab.size());
  int64_t max_id = -1;
  for (const auto& [token, id] : vocab.items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX)
      ctx.at("vocab").fail(ErrorKind::model_format, "entry '" + token + "' must map to a non-negative integer id");
    m->vocab_[token] = static_cast<int32_t>(id.get<int64_t>());
    max_id = std::max(max_id, id.get<int64_t>());
  }
  if (max_id >= kMaxTokenId)
    ctx.at("vocab").fail(ErrorKind::model_format, "id " + std::to_string(max_id) + " is implausibly large");
  m->id_to_token_.resize(static_cast<size_t>(max_id + 1));
  m->has_id_.assign(static_cast<size_t>(max_id + 1), 0);
  for (const auto& [token, id] : m->vocab_) {
    m->id_to_token_[static_cast<size_t>(id)] = token;
    m->has_id_[static_cast<size_t>(id)] = 1;
  }

  if (const json* unk = find_field(v, "unk_token")) {
    if (!unk->is_string()) ctx.at("unk_token").fail(ErrorKind::model_format, "must be a string");
    const auto it = m->vocab_.find(unk->get<std::string>());
    if (it == m->vocab_.end())
      ctx.at("unk_token").fail(ErrorKind::model_format, "'" + unk->get<std::string>() + "' is not in model.vocab");
    m->unk_id_ = it->second;
  }
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    const auto it = m->vocab_.find(std::string_view(name));
    m->byte_ids_[static_cast<size_t>(b)] = it == m->vocab_.end() ? -1 : it->second;
  }

  const json* merges = find_field(v, "merges");
  if (merges != nullptr && !merges->is_array()) ctx.at("merges").fail(ErrorKind::model_format, "must be an array");
  if (merges != nullptr) {
    m->merges_.reserve(merges->size() * 2);
    for (size_t i = 0; i < merges->size(); ++i) {
      const json& e = (*merges)[i];
      const JsonCtx ectx = ctx.at("merges").at(i);
      std::string a, b;
      if (e.is_string()) {  // "a b": split at the first space
        const std::string& s = e.get_ref<const std::string&>();
        const size_t sp = s.find(' ');
        if (sp == std::string::npos)
          ectx.fail(ErrorKind::model_format, "'" + s + "' must be two tokens separated by a space");
        a = s.substr(0, sp);
        b = s.substr(sp + 1);
      } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
        a = e[0].get<std::string>();
        b = e[1].get<std::string>();
      } else {
        ectx.fail(ErrorKind::model_format, "must be \"a b\" or [\"a\", \"b\"]");
      }
      const auto ia = m->vocab_.find(a), ib = m->vocab_.find(b);
      if (ia == m->vocab_.end()) ectx.fail(ErrorKind::model_format, "token '" + a + "' is not in model.vocab");
      if (ib == m->vocab_.end()) ectx.fail(ErrorKind::model_format, "token '" + b + "' is not in model.vocab");
      const std::string merged = a + b.substr(std::min(m->prefix_.size(), b.size()));
      const auto im = m->vocab_.find(merged);
      if (im == m->vocab_.end())
        ectx.fail(ErrorKind::model_format, "merged token '" + merged + "' is not in model.vocab");
      // Later duplicates win, as when `tokenizers` collects the merges into its map.
      m->merges_[pair_key(ia->second, ib->second)] = MergeInfo{static_cast<uint32_t>(i), im->second};
    }
  }
  return m;
}

std::optional<int32_t> BpeModel::token_to_id(std::string_view token) const {
  const auto it = vocab_.find(token);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string* BpeModel::id_to_token(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= id_to_token_.size() || !has_id_[static_cast<size_t>(id)]) return nullptr;
  return &id_to_token_[static_cast<size_t>(id)];
}

void BpeModel::tokenize(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    const auto it = vocab_.find(word);
    if (it != vocab_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  const bool cacheable = word.size() < kCacheMaxWordBytes;
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mu_);
    const auto it = cache_.find(word);
    if (it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const size_t first = out.size();
  merge_word(word, out);
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mu_);
    if (cache_.size() < kCacheMaxEntries)
      cache_.emplace(std::string(word), std::vector<int32_t>(out.begin() + first, out.end()));
  }
}

namespace {
struct Symbol {
  int32_t id;
  int32_t prev;  // index of the previous live symbol, -1 at the start
  int32_t next;  // index of the next live symbol, -1 at the end
  bool live;
};
struct Candidate {
  uint32_t rank;
  int32_t pos;  // index of the left symbol
  int32_t new_id;
};
// std::priority_queue pops the "largest": make that the lowest rank, then the leftmost position.
struct CandidateOrder {
  bool operator()(const Candidate& a, const Candidate& b) const {
    return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
  }
};
}  // namespace

void BpeModel::merge_word(std::string_view word, std::vector<int32_t>& out) const {
  std::vector<Symbol> syms;
  syms.reserve(word.size());
  auto add = [&](int32_t id) {
    const auto n = static_cast<int32_t>(syms.size());
    if (n > 0) syms.back().next = n;
    syms.push_back(Symbol{id, n - 1, -1, true});
  };
  int32_t pending_unk = -1;  // an unk symbol not yet added (fuse_unk extends it), -1 if none

  std::string piece;
  size_t i = 0;
  while (i < word.size()) {
    const size_t start = i;
    i += utf8_seq_len(static_cast<unsigned char>(word[i]));
    if (i > word.size()) i = word.size();
    piece.clear();
    if (start > 0) piece += prefix_;
    piece.append(word.substr(start, i - start));
    if (i == word.size()) piece += suffix_;

    if (const auto it = vocab_.find(piece); it != vocab_.end()) {
      if (pending_unk >= 0) add(pending_unk), pending_unk = -1;
      add(it->second);
      continue;
    }
    if (byte_fallback_) {
      bool all = true;
      for (char c : piece) all = all && byte_ids_[static_cast<unsigned char>(c)] >= 0;
      if (all) {
        // As in `tokenizers`, a pending unk is not flushed before byte tokens.
        for (char c : piece) add(byte_ids_[static_cast<unsigned char>(c)]);
        continue;
      }
    }
    if (unk_id_) {
      if (pending_unk >= 0 && !fuse_unk_) add(pending_unk);
      pending_unk = *unk_id_;
    }
    // No unk token and no byte fallback: the character is dropped, as in `tokenizers`.
  }
  if (pending_unk >= 0) add(pending_unk);

  if (syms.size() > 1 && !merges_.empty()) {
    std::vector<Candidate> storage;
    storage.reserve(syms.size() * 2);
    std::priority_queue<Candidate, std::vector<Candidate>, CandidateOrder> queue(CandidateOrder{}, std::move(storage));
    auto consider = [&](int32_t left) {
      const Symbol& l = syms[static_cast<size_t>(left)];
      if (l.next < 0) return;
      const auto it = merges_.find(pair_key(l.id, syms[static_cast<size_t>(l.next)].id));
      if (it != merges_.end()) queue.push(Candidate{it->second.rank, left, it->second.new_id});
    };
    for (int32_t k = 0; k + 1 < static_cast<int32_t>(syms.size()); ++k) consider(k);

    while (!queue.empty()) {
      const Candidate top = queue.top();
      queue.pop();
      Symbol& left = syms[static_cast<size_t>(top.pos)];
      if (!left.live || left.next < 0) continue;
      Symbol& right = syms[static_cast<size_t>(left.next)];
      // Stale entry: the pair at this position changed since it was queued.
      const auto it = merges_.find(pair_key(left.id, right.id));
      if (it == merges_.end() || it->second.new_id != top.new_id) continue;
      left.id = top.new_id;
      right.live = false;
      left.next = right.next;
      if (right.next >= 0) syms[static_cast<size_t>(right.next)].prev = top.pos;
      if (left.prev >= 0) consider(left.prev);
      consider(top.pos);
    }
  }
  for (const Symbol& s : syms)
    if (s.live) out.push_back(s.id);
}

}  // namespace lmlab::tok
