// The CUDA backend (see backend/backend.h and docs/cuda.md).
#pragma once

#include <memory>
#include <string>

#include "backend/backend.h"

namespace lmlab {

// Empty when a CUDA device can be used, else the reason (no device, driver too old, ...).
std::string cuda_unavailable_reason();
std::unique_ptr<Backend> make_cuda_backend(const ModelOptions& options, const Transformer& transformer);

}  // namespace lmlab
