// Model::Impl: the loaded transformer and tokenizer behind the public Model handle.
#pragma once

#include <optional>

#include "lmlab/model.h"
#include "model/transformer.h"

namespace lmlab {

struct Model::Impl {
  ModelOptions options;
  ModelInfo info;
  std::unique_ptr<Transformer> transformer;
  std::optional<Tokenizer> tokenizer;
};

}  // namespace lmlab
