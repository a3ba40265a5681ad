// Tokenizer loaded from a Hugging Face tokenizer.json: BPE models (byte-level as in GPT-2/Qwen, and
// SentencePiece-style with byte fallback as in Llama/Gemma), normalizers, pre-tokenizers, post-processor,
// added/special tokens and decoders, reproducing the `tokenizers` library exactly.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace lmlab {

class Tokenizer {
 public:
  // Throws lmlab::Error (model_format / unsupported) naming the file and the offending field.
  static Tokenizer from_file(const std::filesystem::path& tokenizer_json);
  static Tokenizer from_json_text(std::string_view json_text, std::string source_name = "tokenizer.json");

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // add_special_tokens applies the post-processor (e.g. a leading <s>), like HF's encode().
  // Added tokens that appear literally in the text (e.g. "<|im_start|>") are always matched.
  // Throws lmlab::Error(invalid_input) when `text` is not valid UTF-8. Thread-safe.
  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens = false) const;
  // encode() that stops once it has more than max_tokens ids (then returns the first max_tokens + 1): a caller
  // with a token limit (the server's context) learns that a huge text is too long without encoding all of it.
  std::vector<int32_t> encode_at_most(std::string_view text, bool add_special_tokens, int64_t max_tokens) const;
  // Ids outside the vocabulary are skipped; the result is always valid UTF-8 (U+FFFD for broken bytes).
  std::string decode(std::span<const int32_t> ids, bool skip_special_tokens = false) const;

  int32_t vocab_size() const;  // 1 + the largest id, added tokens included
  std::optional<int32_t> token_to_id(std::string_view token) const;
  std::string id_to_token(int32_t id) const;  // the raw vocabulary string ("" if unknown)
  bool is_special(int32_t id) const;

  struct Impl;

 private:
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Streaming detokenizer for generation: feed ids one at a time, get the text that became complete.
// Holds back incomplete UTF-8 sequences (byte-fallback / byte-level pieces) until they complete, and
// handles decoders that depend on the position (e.g. the leading-space strip of SentencePiece).
// push()es + flush() concatenate to decode(ids) except when a run of <0xXX> byte-fallback ids turns
// invalid after part of it was emitted: decode() then replaces the whole run by U+FFFDs, the stream
// cannot take back what it already returned.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok, bool skip_special_tokens = true);
  std::string push(int32_t id);  // new complete text, possibly empty
  std::string flush();           // whatever is left (invalid UTF-8 replaced by U+FFFD)

 private:
  const Tokenizer* tok_;
  bool skip_special_;
  // A window of recent ids: the tokens behind the latest emission, then those not yet emitted. Decoding
  // only the window keeps push() O(window) while position-dependent decoders see the same first token
  // in `prefix_` and in the new decode.
  std::vector<int32_t> ids_;
  size_t emitted_bytes_ = 0;  // total bytes returned so far
  std::string prefix_;        // decode(ids_[0, pending_from_)): text of the window already emitted
  size_t pending_from_ = 0;   // index in ids_ of the first id not covered by an emission
};

}  // namespace lmlab
