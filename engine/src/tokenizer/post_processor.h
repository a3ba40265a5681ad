// Post-processors of tokenizer.json ("post_processor"): add the special tokens of a single sequence
// when encode() is called with add_special_tokens (TemplateProcessing, RobertaProcessing,
// BertProcessing, ByteLevel (ids unchanged), Sequence). Pair templates are not used by lmlab.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "tokenizer/json_fields.h"

namespace lmlab::tok {

class PostProcessor {
 public:
  virtual ~PostProcessor() = default;
  // Called only when special tokens are wanted; rewrites the ids of one sequence in place.
  virtual void process(std::vector<int32_t>& ids) const = 0;
};

std::unique_ptr<PostProcessor> make_post_processor(const json& v, const JsonCtx& ctx);

}  // namespace lmlab::tok
