// Normalizers of tokenizer.json ("normalizer"): text -> text transforms applied to each piece of the
// input that is not an added token, before pre-tokenization. Offsets are not tracked (the public API
// returns ids only), so a normalizer is a plain string function.
#pragma once

#include <memory>
#include <string>

#include "tokenizer/json_fields.h"

namespace lmlab::tok {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual std::string normalize(std::string text) const = 0;
};

// Builds the normalizer described by `v` (NFC, NFD, NFKC, NFKD, Lowercase, Strip, StripAccents, Replace,
// Prepend, ByteLevel, Sequence). Throws lmlab::Error naming ctx.path for anything else.
std::unique_ptr<Normalizer> make_normalizer(const json& v, const JsonCtx& ctx);

}  // namespace lmlab::tok
