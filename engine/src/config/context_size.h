// What --ctx-size 0 (the default) means, in one place: the model's max_position_embeddings. Model loading and
// the memory plan both resolve it here (option table: ctx_size).
#pragma once

#include <cstdint>

#include "config/model_spec.h"

namespace lmlab {

inline int64_t resolve_ctx_size(int64_t requested, const ModelSpec& spec) {
  return requested > 0 ? requested : spec.max_positions;
}

}  // namespace lmlab
