// A device fault that leaves the process's GPU context unusable (CUDA's "sticky" errors: an illegal address, a
// kernel's trap or assert, a launch failure): every later call on the context fails with it again. The engine keeps
// the first one (cuda::throw_cuda records it) so that later errors and the server's /health and generation routes
// (503) name the cause, instead of each request failing with a new symptom ("tokens: an illegal memory access").
#pragma once

#include <string>

namespace lmlab {

// Records `what` as the process's device fault unless one is recorded already; true when this call recorded it.
bool record_device_fault(const std::string& what);
// The recorded fault ("" while there is none).
std::string device_fault();

}  // namespace lmlab
