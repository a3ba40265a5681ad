// make_backend: picks the backend --device names (see backend_factory.h).
#include "model/backend_factory.h"

#include "backend/backend_cpu.h"
#include "lmlab/error.h"
#include "lmlab/options.h"
#ifdef LMLAB_HAVE_CUDA
#include "cuda/cuda_backend.h"
#endif

namespace lmlab {

std::string device_unavailable_reason(Device device) {
  if (device == Device::cpu) return {};
#ifdef LMLAB_HAVE_CUDA
  return cuda_unavailable_reason();
#else
  return "this build has no CUDA backend (nvcc was not found)";
#endif
}

std::unique_ptr<Backend> make_backend(const ModelOptions& options, const Transformer& transformer) {
  switch (options.device) {
    case Device::cpu:
      if (options.gpu_layers > 0)
        throw Error(ErrorKind::invalid_input, std::string(option_flag("gpu_layers")), "needs --device cuda");
      return make_cpu_backend(transformer);
    case Device::cuda:
      if (const std::string why = device_unavailable_reason(Device::cuda); !why.empty())
        throw Error(ErrorKind::unsupported, std::string(option_flag("device")), "cuda: " + why);
#ifdef LMLAB_HAVE_CUDA
      return make_cuda_backend(options, transformer);
#endif
      break;
  }
  throw Error(ErrorKind::invalid_input, std::string(option_flag("device")), "unknown device");
}

}  // namespace lmlab
