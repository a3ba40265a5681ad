// CUDA runtime errors as lmlab::Error: every runtime call and every kernel launch is checked, so a failure
// names what failed (and out-of-memory is out_of_memory, which the server maps to 503).
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "lmlab/error.h"
#include "util/device_fault.h"

namespace lmlab::cuda {

// The errors after which the context is lost: CUDA's documentation says of each that any further CUDA work returns
// it again and the process must be relaunched.
inline bool loses_context(cudaError_t e) {
  switch (e) {
    case cudaErrorContained: case cudaErrorIllegalAddress: case cudaErrorLaunchTimeout: case cudaErrorAssert:
    case cudaErrorHardwareStackError: case cudaErrorIllegalInstruction: case cudaErrorMisalignedAddress:
    case cudaErrorInvalidAddressSpace: case cudaErrorInvalidPc: case cudaErrorLaunchFailure:
    case cudaErrorTensorMemoryLeak:
      return true;
    default:
      return false;
  }
}

// A context-losing error is recorded as the process's device fault (util/device_fault.h) the first time; its
// message says the context is lost, and every later one names where it was lost.
[[noreturn]] inline void throw_cuda(cudaError_t e, const char* what) {
  const std::string where = std::string("cuda: ") + what;
  std::string message = cudaGetErrorString(e);
  if (loses_context(e)) {
    message += record_device_fault(where + ": " + message)
                   ? " (the GPU context is lost: restart the process)"
                   : "; the GPU context was lost earlier (" + device_fault() + ")";
  }
  throw Error(e == cudaErrorMemoryAllocation ? ErrorKind::out_of_memory : ErrorKind::internal, where, message);
}

inline void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw_cuda(e, what);
}

// After a launch: a bad configuration shows up here, not at the next synchronisation.
inline void check_launch(const char* kernel) { check(cudaGetLastError(), kernel); }

}  // namespace lmlab::cuda
