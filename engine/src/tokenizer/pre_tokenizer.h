// Pre-tokenizers of tokenizer.json ("pre_tokenizer"): split each normalized piece into the words the
// model tokenizes independently (and, for ByteLevel, map bytes to GPT-2's printable characters).
// Pieces that are added tokens pass through untouched, as in `tokenizers`.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tokenizer/json_fields.h"

namespace lmlab::tok {

// A piece of the input on its way to the model.
struct Piece {
  std::string text;       // normalized (and pre-tokenized) text; unused for added tokens
  int32_t added_id = -1;  // >= 0: an added token found in the input; the model never sees it
  bool at_start = false;  // begins at byte 0 of the original input (Metaspace's prepend_scheme "first")
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Replaces every non-added piece by its sub-pieces; empty pieces are dropped.
  virtual void pre_tokenize(std::vector<Piece>& pieces) const = 0;
};

// ByteLevel, Metaspace, Whitespace, WhitespaceSplit, Digits, Punctuation, BertPreTokenizer, Split,
// Sequence; anything else throws lmlab::Error(unsupported) naming ctx.path.
std::unique_ptr<PreTokenizer> make_pre_tokenizer(const json& v, const JsonCtx& ctx);

// Parses a "behavior" field (Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous).
SplitBehavior get_split_behavior(const json& obj, std::string_view key, SplitBehavior fallback, const JsonCtx& ctx);

}  // namespace lmlab::tok
