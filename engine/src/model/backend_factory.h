// The backend --device names, over the loaded host model. The CUDA backend exists only in builds where CMake found
// nvcc (LMLAB_HAVE_CUDA); elsewhere --device cuda is an unsupported error, never a silent CPU fallback.
#pragma once

#include <memory>
#include <string>

#include "backend/backend.h"

namespace lmlab {

// Empty when `device` can run models here, else why not ("this build has no CUDA backend", "no CUDA device:
// <driver's message>"): GPU tests skip visibly with it.
std::string device_unavailable_reason(Device device);

// Throws unsupported naming --device when this build or machine has no such device.
std::unique_ptr<Backend> make_backend(const ModelOptions& options, const Transformer& transformer);

}  // namespace lmlab
