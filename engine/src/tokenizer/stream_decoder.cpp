// StreamDecoder: incremental detokenization for generation. Each push decodes a small window of ids
// (the tokens of the latest emission plus the new ones) and emits what the new ids added, like
// `tokenizers`' DecodeStream. Text ending in U+FFFD is held back: it is an incomplete UTF-8 sequence
// (byte-level or <0xXX> byte-fallback pieces) that a later id may complete.
// Invariant: for streams whose byte pieces form valid UTF-8, the concatenation of all push() results
// and flush() equals Tokenizer::decode(all ids). When the ids hold an invalid byte sequence after a
// character was already emitted, the stream cannot take that character back; it then continues from the
// same byte position of the new text (see resync).
#include "lmlab/tokenizer.h"

namespace lmlab {

namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

// The part of `text` after `prefix`; when `text` does not extend `prefix`, the part after the same byte
// position (moved forward to a character boundary).
std::string new_suffix(const std::string& text, const std::string& prefix) {
  if (text.starts_with(prefix)) return text.substr(prefix.size());
  size_t pos = std::min(prefix.size(), text.size());
  while (pos < text.size() && (static_cast<unsigned char>(text[pos]) & 0xC0) == 0x80) ++pos;
  return text.substr(pos);
}

}  // namespace

StreamDecoder::StreamDecoder(const Tokenizer& tok, bool skip_special_tokens)
    : tok_(&tok), skip_special_(skip_special_tokens) {}

std::string StreamDecoder::push(int32_t id) {
  ids_.push_back(id);
  const std::string text = tok_->decode(ids_, skip_special_);
  if (text.size() <= prefix_.size() || text.ends_with(kReplacement)) return {};
  std::string out = new_suffix(text, prefix_);
  emitted_bytes_ += out.size();
  // Slide the window: keep only the ids behind this emission as context for the next one.
  ids_.erase(ids_.begin(), ids_.begin() + static_cast<std::ptrdiff_t>(pending_from_));
  pending_from_ = ids_.size();
  prefix_ = tok_->decode(ids_, skip_special_);
  return out;
}

std::string StreamDecoder::flush() {
  std::string out;
  if (pending_from_ < ids_.size()) {
    const std::string text = tok_->decode(ids_, skip_special_);
    if (text.size() > prefix_.size() || !text.starts_with(prefix_)) out = new_suffix(text, prefix_);
  }
  emitted_bytes_ += out.size();
  ids_.clear();
  prefix_.clear();
  pending_from_ = 0;
  return out;
}

}  // namespace lmlab
