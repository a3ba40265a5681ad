// Pre-tokenizer implementations, each matching the `tokenizers` pre-tokenizer of the same "type".
// Invariants: added-token pieces are never split or changed; every produced piece is non-empty; a
// sub-piece is `at_start` only when its parent was and it begins at the parent's byte 0.
#include "tokenizer/pre_tokenizer.h"

#include <utility>

#include "text/unicode.h"

namespace lmlab::tok {

namespace {

// Runs fn(piece, out) on every non-added piece; fn appends the replacement pieces to `out`.
template <class Fn>
void split_each(std::vector<Piece>& pieces, Fn&& fn) {
  std::vector<Piece> out;
  out.reserve(pieces.size() * 2);
  for (Piece& p : pieces) {
    if (p.added_id >= 0) {
      out.push_back(std::move(p));
      continue;
    }
    fn(p, out);
  }
  std::erase_if(out, [](const Piece& p) { return p.added_id < 0 && p.text.empty(); });
  pieces.swap(out);
}

void push_ranges(const Piece& parent, std::string_view text, const std::vector<Range>& ranges,
                 std::vector<Piece>& out) {
  for (const Range& r : ranges) {
    out.push_back(Piece{std::string(text.substr(r.start, r.end - r.start)), -1, parent.at_start && r.start == 0});
  }
}

void split_piece(const Piece& p, std::string_view text, const Pattern& pattern, SplitBehavior behavior, bool invert,
                 std::vector<Piece>& out) {
  push_ranges(p, text, split_ranges(pattern.find_matches(text, invert), behavior), out);
}

constexpr std::string_view kGpt2Regex = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

class ByteLevel final : public PreTokenizer {
 public:
  ByteLevel(bool add_prefix_space, bool use_regex, const std::string& where) : add_prefix_space_(add_prefix_space) {
    if (use_regex) regex_ = Pattern::regex(kGpt2Regex, where);
    use_regex_ = use_regex;
  }
  void pre_tokenize(std::vector<Piece>& pieces) const override {
    split_each(pieces, [&](Piece& p, std::vector<Piece>& out) {
      if (add_prefix_space_ && (p.text.empty() || p.text[0] != ' ')) p.text.insert(0, 1, ' ');
      const size_t first = out.size();
      if (use_regex_) {
        split_piece(p, p.text, regex_, SplitBehavior::isolated, false, out);
      } else {
        out.push_back(std::move(p));
      }
      const auto& table = byte_to_unicode();
      for (size_t k = first; k < out.size(); ++k) {
        std::string mapped;
        mapped.reserve(out[k].text.size() * 2);
        for (char c : out[k].text) mapped += table[static_cast<unsigned char>(c)];
        out[k].text = std::move(mapped);
      }
    });
  }

 private:
  bool add_prefix_space_;
  bool use_regex_ = true;
  Pattern regex_;
};

enum class PrependScheme { first, always, never };

class Metaspace final : public PreTokenizer {
 public:
  Metaspace(std::string replacement, PrependScheme scheme, bool split)
      : replacement_(std::move(replacement)), scheme_(scheme), split_(split) {
    size_t i = 0;
    const char32_t rep = utf8_next(replacement_, i);
    splitter_ = Pattern::predicate([rep](char32_t c) { return c == rep; });
  }
  void pre_tokenize(std::vector<Piece>& pieces) const override {
    split_each(pieces, [&](Piece& p, std::vector<Piece>& out) {
      p.text = replace_all(p.text, space_, replacement_);
      const bool has_rep = p.text.starts_with(replacement_);
      if ((scheme_ == PrependScheme::always && !has_rep) || (scheme_ == PrependScheme::first && !has_rep && p.at_start))
        p.text.insert(0, replacement_);
      if (split_) {
        split_piece(p, p.text, splitter_, SplitBehavior::merged_with_next, false, out);
      } else {
        out.push_back(std::move(p));
      }
    });
  }

 private:
  std::string replacement_;
  PrependScheme scheme_;
  bool split_;
  Pattern splitter_;
  Pattern space_ = Pattern::literal(" ");
};

// Split on a pattern with a behaviour; covers Split, Whitespace, WhitespaceSplit, Digits, Punctuation.
class PatternSplit final : public PreTokenizer {
 public:
  PatternSplit(Pattern pattern, SplitBehavior behavior, bool invert)
      : pattern_(std::move(pattern)), behavior_(behavior), invert_(invert) {}
  void pre_tokenize(std::vector<Piece>& pieces) const override {
    split_each(pieces,
               [&](Piece& p, std::vector<Piece>& out) { split_piece(p, p.text, pattern_, behavior_, invert_, out); });
  }

 private:
  Pattern pattern_;
  SplitBehavior behavior_;
  bool invert_;
};

class Sequence final : public PreTokenizer {
 public:
  explicit Sequence(std::vector<std::unique_ptr<PreTokenizer>> steps) : steps_(std::move(steps)) {}
  void pre_tokenize(std::vector<Piece>& pieces) const override {
    for (const auto& s : steps_) s->pre_tokenize(pieces);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> steps_;
};

PrependScheme get_prepend_scheme(const json& v, const JsonCtx& ctx) {
  if (find_field(v, "prepend_scheme") == nullptr) {  // files written before prepend_scheme existed
    return get_bool_or(v, "add_prefix_space", true, ctx) ? PrependScheme::always : PrependScheme::never;
  }
  const std::string s = get_string(v, "prepend_scheme", ctx);
  if (s == "first") return PrependScheme::first;
  if (s == "always") return PrependScheme::always;
  if (s == "never") return PrependScheme::never;
  ctx.at("prepend_scheme").fail(ErrorKind::unsupported, "'" + s + "' is not supported (first, always, never)");
}

}  // namespace

SplitBehavior get_split_behavior(const json& obj, std::string_view key, SplitBehavior fallback, const JsonCtx& ctx) {
  const std::string s = get_string_or(obj, key, "", ctx);
  if (s.empty()) return fallback;
  if (s == "Removed") return SplitBehavior::removed;
  if (s == "Isolated") return SplitBehavior::isolated;
  if (s == "MergedWithPrevious") return SplitBehavior::merged_with_previous;
  if (s == "MergedWithNext") return SplitBehavior::merged_with_next;
  if (s == "Contiguous") return SplitBehavior::contiguous;
  ctx.at(key).fail(ErrorKind::unsupported, "'" + s + "' is not supported");
}

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const json& v, const JsonCtx& ctx) {
  require_object(v, ctx);
  const std::string type = get_type(v, ctx);
  if (type == "ByteLevel") {
    return std::make_unique<ByteLevel>(get_bool_or(v, "add_prefix_space", true, ctx),
                                       get_bool_or(v, "use_regex", true, ctx), ctx.file + ": " + ctx.path);
  }
  if (type == "Metaspace") {
    return std::make_unique<Metaspace>(get_char(v, "replacement", "\xE2\x96\x81", ctx), get_prepend_scheme(v, ctx),
                                       get_bool_or(v, "split", true, ctx));
  }
  if (type == "Whitespace") {
    // `tokenizers` keeps the runs of \w+|[^\w\s]+ and drops the rest.
    return std::make_unique<PatternSplit>(Pattern::regex(R"(\w+|[^\w\s]+)", ctx.file + ": " + ctx.path),
                                          SplitBehavior::removed, true);
  }
  if (type == "WhitespaceSplit") {
    return std::make_unique<PatternSplit>(Pattern::predicate(is_whitespace), SplitBehavior::removed, false);
  }
  if (type == "Digits") {
    const bool individual = get_bool_or(v, "individual_digits", false, ctx);
    return std::make_unique<PatternSplit>(Pattern::predicate(is_numeric),
                                          individual ? SplitBehavior::isolated : SplitBehavior::contiguous, false);
  }
  if (type == "Punctuation") {
    return std::make_unique<PatternSplit>(Pattern::predicate(is_punctuation),
                                          get_split_behavior(v, "behavior", SplitBehavior::isolated, ctx), false);
  }
  if (type == "BertPreTokenizer") {
    std::vector<std::unique_ptr<PreTokenizer>> steps;
    steps.push_back(std::make_unique<PatternSplit>(Pattern::predicate(is_whitespace), SplitBehavior::removed, false));
    steps.push_back(std::make_unique<PatternSplit>(Pattern::predicate(is_punctuation), SplitBehavior::isolated, false));
    return std::make_unique<Sequence>(std::move(steps));
  }
  if (type == "Split") {
    if (find_field(v, "behavior") == nullptr) ctx.at("behavior").fail(ErrorKind::model_format, "is missing");
    return std::make_unique<PatternSplit>(get_pattern(v, "pattern", ctx),
                                          get_split_behavior(v, "behavior", SplitBehavior::isolated, ctx),
                                          get_bool_or(v, "invert", false, ctx));
  }
  if (type == "Sequence") {
    const json& list = get_array(v, "pretokenizers", ctx);
    std::vector<std::unique_ptr<PreTokenizer>> steps;
    for (size_t i = 0; i < list.size(); ++i)
      steps.push_back(make_pre_tokenizer(list[i], ctx.at("pretokenizers").at(i)));
    return std::make_unique<Sequence>(std::move(steps));
  }
  ctx.unsupported_type(type);
}

}  // namespace lmlab::tok
