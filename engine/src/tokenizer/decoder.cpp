// Decoder implementations, each matching the `tokenizers` decoder of the same "type".
// Invariant: output strings are valid UTF-8. ByteLevel joins the bytes of all tokens and replaces
// invalid sequences like Rust's from_utf8_lossy; ByteFallback turns an invalid run of <0xXX> tokens into
// one U+FFFD per byte, as `tokenizers` does.
#include "tokenizer/decoder.h"

#include "text/unicode.h"

namespace lmlab::tok {

namespace {

class ByteLevel final : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string bytes;
    for (const std::string& t : tokens) {
      // A token made only of table characters contributes their bytes; otherwise its own UTF-8.
      const size_t mark = bytes.size();
      bool mapped = true;
      size_t i = 0;
      while (i < t.size()) {
        const int b = unicode_to_byte(utf8_next(t, i));
        if (b < 0) {
          mapped = false;
          break;
        }
        bytes += static_cast<char>(b);
      }
      if (!mapped) {
        bytes.resize(mark);
        bytes += t;
      }
    }
    tokens.assign(1, utf8_lossy(bytes));
  }
};

class ByteFallback final : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::vector<std::string> out;
    out.reserve(tokens.size());
    std::string run;  // bytes of consecutive <0xXX> tokens
    size_t run_len = 0;
    auto flush = [&] {
      if (run_len == 0) return;
      if (utf8_valid(run)) {
        out.push_back(run);
      } else {
        for (size_t k = 0; k < run_len; ++k) out.emplace_back("\xEF\xBF\xBD");
      }
      run.clear();
      run_len = 0;
    };
    for (std::string& t : tokens) {
      int byte = -1;
      if (t.size() == 6 && t.starts_with("<0x") && t.back() == '>') byte = parse_hex_byte(t[3], t[4]);
      if (byte >= 0) {
        run += static_cast<char>(byte);
        ++run_len;
      } else {
        flush();
        out.push_back(std::move(t));
      }
    }
    flush();
    tokens = std::move(out);
  }

 private:
  static int hex(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }
  // Rust's u8::from_str_radix(s, 16) on two characters (a leading '+' is accepted).
  static int parse_hex_byte(char a, char b) {
    if (a == '+') return hex(b);
    const int hi = hex(a), lo = hex(b);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
  }
};

class Fuse final : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string all;
    for (const std::string& t : tokens) all += t;
    tokens.assign(1, std::move(all));
  }
};

// Removes up to `start` leading and `stop` trailing copies of one character from every token.
class Strip final : public Decoder {
 public:
  Strip(std::string content, size_t start, size_t stop) : content_(std::move(content)), start_(start), stop_(stop) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (std::string& t : tokens) {
      size_t begin = 0;
      for (size_t k = 0; k < start_ && t.compare(begin, content_.size(), content_) == 0 && begin < t.size(); ++k)
        begin += content_.size();
      size_t end = t.size();
      for (size_t k = 0; k < stop_ && end >= begin + content_.size() &&
                         t.compare(end - content_.size(), content_.size(), content_) == 0;
           ++k)
        end -= content_.size();
      t = t.substr(begin, end - begin);
    }
  }

 private:
  std::string content_;
  size_t start_, stop_;
};

class Replace final : public Decoder {
 public:
  Replace(Pattern pattern, std::string content) : pattern_(std::move(pattern)), content_(std::move(content)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (std::string& t : tokens) t = replace_all(t, pattern_, content_);
  }

 private:
  Pattern pattern_;
  std::string content_;
};

// Replacement character -> space; in the first token it is dropped unless prepend_scheme is "never".
class Metaspace final : public Decoder {
 public:
  Metaspace(std::string replacement, bool strip_first)
      : replacement_(std::move(replacement)), strip_first_(strip_first) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      std::string out;
      std::string_view t = tokens[i];
      size_t pos = 0;
      while (pos < t.size()) {
        if (t.compare(pos, replacement_.size(), replacement_) == 0) {
          if (!(i == 0 && strip_first_)) out += ' ';
          pos += replacement_.size();
        } else {
          out += t[pos++];
        }
      }
      tokens[i] = std::move(out);
    }
  }

 private:
  std::string replacement_;
  bool strip_first_;
};

// The end-of-word suffix becomes a space (nothing after the last token).
class BpeSuffix final : public Decoder {
 public:
  explicit BpeSuffix(std::string suffix) : suffix_(std::move(suffix)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    const Pattern p = Pattern::literal(suffix_);
    for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = replace_all(tokens[i], p, i + 1 == tokens.size() ? "" : " ");
  }

 private:
  std::string suffix_;
};

class Sequence final : public Decoder {
 public:
  explicit Sequence(std::vector<std::unique_ptr<Decoder>> steps) : steps_(std::move(steps)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (const auto& s : steps_) s->decode_chain(tokens);
  }

 private:
  std::vector<std::unique_ptr<Decoder>> steps_;
};

size_t get_count(const json& v, std::string_view key, const JsonCtx& ctx) {
  const int64_t n = get_int_or(v, key, 0, ctx);
  if (n < 0) ctx.at(key).fail(ErrorKind::model_format, "must not be negative");
  return static_cast<size_t>(n);
}

}  // namespace

std::unique_ptr<Decoder> make_decoder(const json& v, const JsonCtx& ctx) {
  require_object(v, ctx);
  const std::string type = get_type(v, ctx);
  if (type == "ByteLevel") return std::make_unique<ByteLevel>();
  if (type == "ByteFallback") return std::make_unique<ByteFallback>();
  if (type == "Fuse") return std::make_unique<Fuse>();
  if (type == "Strip") {
    return std::make_unique<Strip>(get_char(v, "content", " ", ctx), get_count(v, "start", ctx),
                                   get_count(v, "stop", ctx));
  }
  if (type == "Replace")
    return std::make_unique<Replace>(get_pattern(v, "pattern", ctx), get_string(v, "content", ctx));
  if (type == "Metaspace") {
    bool strip_first = true;
    if (find_field(v, "prepend_scheme") != nullptr) {
      const std::string s = get_string(v, "prepend_scheme", ctx);
      if (s != "first" && s != "always" && s != "never")
        ctx.at("prepend_scheme").fail(ErrorKind::unsupported, "'" + s + "' is not supported (first, always, never)");
      strip_first = s != "never";
    } else {
      strip_first = get_bool_or(v, "add_prefix_space", true, ctx);
    }
    return std::make_unique<Metaspace>(get_char(v, "replacement", "\xE2\x96\x81", ctx), strip_first);
  }
  if (type == "BPEDecoder") return std::make_unique<BpeSuffix>(get_string_or(v, "suffix", "</w>", ctx));
  if (type == "Sequence") {
    const json& list = get_array(v, "decoders", ctx);
    std::vector<std::unique_ptr<Decoder>> steps;
    for (size_t i = 0; i < list.size(); ++i) steps.push_back(make_decoder(list[i], ctx.at("decoders").at(i)));
    return std::make_unique<Sequence>(std::move(steps));
  }
  ctx.unsupported_type(type);
}

}  // namespace lmlab::tok
