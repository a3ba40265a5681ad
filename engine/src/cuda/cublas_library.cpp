#include "cuda/cublas_library.h"

#include <dlfcn.h>

#include <string>

#include "lmlab/error.h"

namespace lmlab::cuda {

namespace {

void* open_cublas() {
  std::string errors;
  for (const char* name : {LMLAB_CUBLAS_SONAME, LMLAB_CUBLAS_TOOLKIT_PATH}) {
    if (void* h = dlopen(name, RTLD_NOW | RTLD_LOCAL)) return h;
    errors += std::string(errors.empty() ? "" : "; ") + dlerror();
  }
  throw Error(ErrorKind::unsupported, "cuBLAS",
              std::string("cannot open " LMLAB_CUBLAS_SONAME " (prefill GEMMs on the GPU need it): ") + errors);
}

template <typename Fn>
void resolve(void* lib, Fn& fn, const char* symbol) {
  fn = reinterpret_cast<Fn>(dlsym(lib, symbol));
  if (!fn) throw Error(ErrorKind::unsupported, "cuBLAS", std::string(LMLAB_CUBLAS_SONAME " lacks ") + symbol);
}

CublasLibrary load() {
  void* lib = open_cublas();
  CublasLibrary c;
  resolve(lib, c.create, "cublasCreate_v2");
  resolve(lib, c.set_stream, "cublasSetStream_v2");
  resolve(lib, c.sgemm, "cublasSgemm_v2");
  resolve(lib, c.gemm_ex, "cublasGemmEx");
  resolve(lib, c.status_string, "cublasGetStatusString");
  return c;
}

}  // namespace

const CublasLibrary& cublas() {
  static const CublasLibrary library = load();  // a failed load throws and is retried by the next caller
  return library;
}

}  // namespace lmlab::cuda
