// cuBLAS, opened on first use. Linking it at build time maps and initialises ~200 MB of libcublasLt in every
// process, CPU-only runs included (the CI gate's peak RSS doubled); opened lazily, only a process that runs a
// prefill GEMM on the GPU pays for it. The types come from the toolkit's header; the functions from dlsym.
#pragma once

#include <cublas_v2.h>

namespace lmlab::cuda {

struct CublasLibrary {
  decltype(&cublasCreate_v2) create = nullptr;
  decltype(&cublasSetStream_v2) set_stream = nullptr;
  decltype(&cublasSgemm_v2) sgemm = nullptr;
  // The C signature (cublas_api.h also declares a C++ overload taking cudaDataType as the compute type).
  cublasStatus_t (*gemm_ex)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int, const void*,
                            const void*, cudaDataType, int, const void*, cudaDataType, int, const void*, void*,
                            cudaDataType, int, cublasComputeType_t, cublasGemmAlgo_t) = nullptr;
  decltype(&cublasGetStatusString) status_string = nullptr;
};

// Opens libcublas (this toolkit's major version, from the loader's path, else the toolkit's own directory) once;
// throws Error(unsupported) naming the library and dlerror() when it cannot be opened or lacks a function.
const CublasLibrary& cublas();

}  // namespace lmlab::cuda
