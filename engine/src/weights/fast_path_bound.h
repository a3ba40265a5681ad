// The size from which a matrix takes a fast, slightly less exact kernel (dense bf16: the int16 prefill GEMM;
// MLX affine: the integer decode kernel and the bf16 prefill GEMM), with the environment override that lets tests
// reach those kernels on the fixtures' small matrices.
#pragma once

#include <cstdint>
#include <cstdlib>

namespace lmlab {

// `bound`, or the non-negative integer in the environment variable `env` when it holds one. Read at each
// matrix's construction (not cached), so a test can set it before loading its model.
inline int64_t fast_path_min_weights(const char* env, int64_t bound) {
  const char* v = std::getenv(env);
  if (v == nullptr || *v == '\0') return bound;
  char* end = nullptr;
  const long long n = std::strtoll(v, &end, 10);
  return (*end == '\0' && n >= 0) ? static_cast<int64_t>(n) : bound;
}

}  // namespace lmlab
