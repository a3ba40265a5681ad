// The CPU backend (the reference): see backend.h.
#pragma once

#include "backend/backend.h"

namespace lmlab {

std::unique_ptr<Backend> make_cpu_backend(const Transformer& transformer);

}  // namespace lmlab
