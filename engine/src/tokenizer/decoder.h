// Decoders of tokenizer.json ("decoder"): token strings -> text. Each stage maps the list of token
// strings to a new list (`tokenizers`' decode_chain); the final text is their concatenation.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "tokenizer/json_fields.h"

namespace lmlab::tok {

class Decoder {
 public:
  virtual ~Decoder() = default;
  virtual void decode_chain(std::vector<std::string>& tokens) const = 0;
};

// ByteLevel, ByteFallback, Fuse, Strip, Replace, Metaspace, BPEDecoder, Sequence; anything else throws
// lmlab::Error(unsupported) naming ctx.path.
std::unique_ptr<Decoder> make_decoder(const json& v, const JsonCtx& ctx);

}  // namespace lmlab::tok
