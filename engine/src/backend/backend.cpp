// Backend's defaults (see backend.h).
#include "backend/backend.h"

#include <algorithm>

namespace lmlab {

void Backend::forward_batch(std::span<const SequenceStep> steps, std::vector<float>& logits) const {
  logits.clear();
  std::vector<float> one;
  for (const SequenceStep& st : steps) {
    forward(st.tokens, st.pos0, *st.cache, false, one);
    logits.insert(logits.end(), one.begin(), one.end());
  }
}

}  // namespace lmlab
