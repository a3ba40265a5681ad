// CUDA runtime errors as lmlab::Error: every runtime call and every kernel launch is checked, so a failure
// names what failed (and out-of-memory is out_of_memory, which the server maps to 503).
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "lmlab/error.h"

namespace lmlab::cuda {

[[noreturn]] inline void throw_cuda(cudaError_t e, const char* what) {
  throw Error(e == cudaErrorMemoryAllocation ? ErrorKind::out_of_memory : ErrorKind::internal,
              std::string("cuda: ") + what, cudaGetErrorString(e));
}

inline void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw_cuda(e, what);
}

// After a launch: a bad configuration shows up here, not at the next synchronisation.
inline void check_launch(const char* kernel) { check(cudaGetLastError(), kernel); }

}  // namespace lmlab::cuda
