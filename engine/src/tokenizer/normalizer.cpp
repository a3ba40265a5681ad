// Normalizer implementations, each matching the `tokenizers` normalizer of the same "type".
// Invariant: input and output are valid UTF-8; an empty input stays empty (Prepend only prepends to
// non-empty text, as in `tokenizers`).
#include "tokenizer/normalizer.h"

#include <vector>

#include "text/unicode.h"

namespace lmlab::tok {

namespace {

class UnicodeForm final : public Normalizer {
 public:
  explicit UnicodeForm(NormalForm form) : form_(form) {}
  std::string normalize(std::string text) const override { return tok::normalize(text, form_); }

 private:
  NormalForm form_;
};

class Lowercase final : public Normalizer {
 public:
  std::string normalize(std::string text) const override { return to_lower(text); }
};

class Strip final : public Normalizer {
 public:
  Strip(bool left, bool right) : left_(left), right_(right) {}
  std::string normalize(std::string text) const override {
    size_t begin = 0, end = text.size();
    if (left_) {
      while (begin < end) {
        size_t i = begin;
        if (!is_whitespace(utf8_next(text, i))) break;
        begin = i;
      }
    }
    if (right_) {
      while (end > begin) {
        size_t start = end - 1;
        while (start > begin && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
        size_t i = start;
        if (!is_whitespace(utf8_next(text, i))) break;
        end = start;
      }
    }
    return text.substr(begin, end - begin);
  }

 private:
  bool left_, right_;
};

// Removes non-spacing marks (meant to follow NFD/NFKD, as in `tokenizers`).
class StripAccents final : public Normalizer {
 public:
  std::string normalize(std::string text) const override {
    std::string out;
    out.reserve(text.size());
    size_t i = 0;
    while (i < text.size()) {
      const size_t start = i;
      const char32_t cp = utf8_next(text, i);
      if (!is_nonspacing_mark(cp)) out.append(text, start, i - start);
    }
    return out;
  }
};

class Replace final : public Normalizer {
 public:
  Replace(Pattern pattern, std::string content) : pattern_(std::move(pattern)), content_(std::move(content)) {}
  std::string normalize(std::string text) const override { return replace_all(text, pattern_, content_); }

 private:
  Pattern pattern_;
  std::string content_;
};

class Prepend final : public Normalizer {
 public:
  explicit Prepend(std::string prefix) : prefix_(std::move(prefix)) {}
  std::string normalize(std::string text) const override { return text.empty() ? text : prefix_ + text; }

 private:
  std::string prefix_;
};

// Every byte becomes its GPT-2 printable character.
class ByteLevelNormalizer final : public Normalizer {
 public:
  std::string normalize(std::string text) const override {
    const auto& table = byte_to_unicode();
    std::string out;
    out.reserve(text.size() * 2);
    for (char c : text) out += table[static_cast<unsigned char>(c)];
    return out;
  }
};

class Sequence final : public Normalizer {
 public:
  explicit Sequence(std::vector<std::unique_ptr<Normalizer>> steps) : steps_(std::move(steps)) {}
  std::string normalize(std::string text) const override {
    for (const auto& s : steps_) text = s->normalize(std::move(text));
    return text;
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> steps_;
};

}  // namespace

std::unique_ptr<Normalizer> make_normalizer(const json& v, const JsonCtx& ctx) {
  require_object(v, ctx);
  const std::string type = get_type(v, ctx);
  if (type == "NFC") return std::make_unique<UnicodeForm>(NormalForm::nfc);
  if (type == "NFD") return std::make_unique<UnicodeForm>(NormalForm::nfd);
  if (type == "NFKC") return std::make_unique<UnicodeForm>(NormalForm::nfkc);
  if (type == "NFKD") return std::make_unique<UnicodeForm>(NormalForm::nfkd);
  if (type == "Lowercase") return std::make_unique<Lowercase>();
  if (type == "StripAccents") return std::make_unique<StripAccents>();
  if (type == "ByteLevel") return std::make_unique<ByteLevelNormalizer>();
  if (type == "Strip") {
    return std::make_unique<Strip>(get_bool_or(v, "strip_left", true, ctx), get_bool_or(v, "strip_right", true, ctx));
  }
  if (type == "Replace")
    return std::make_unique<Replace>(get_pattern(v, "pattern", ctx), get_string(v, "content", ctx));
  if (type == "Prepend") return std::make_unique<Prepend>(get_string(v, "prepend", ctx));
  if (type == "Sequence") {
    const json& list = get_array(v, "normalizers", ctx);
    std::vector<std::unique_ptr<Normalizer>> steps;
    for (size_t i = 0; i < list.size(); ++i) steps.push_back(make_normalizer(list[i], ctx.at("normalizers").at(i)));
    return std::make_unique<Sequence>(std::move(steps));
  }
  ctx.unsupported_type(type);
}

}  // namespace lmlab::tok
