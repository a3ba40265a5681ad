// The vector kernels of the blocked attention, per instruction set (AVX-512, AVX2, scalar; chosen per call from
// kernels/cpu/isa.h's active_isa(), so tests can walk every path with force_isa()). A tile of <= 32 keys (score
// rows a codec decoded, or f32 rows read in place) is scored against all query rows of one KV head as a small
// register-blocked GEMM, and its values are accumulated the same way. The scalar path is the plain reference.
#pragma once

#include <cstdint>

namespace lmlab {

struct TileKernels {
  // s[r * lds + j] = <q_r, t_j> over len floats; q_r = q + r * ldq (r < nr), t_j = t + j * ldt (j < nb).
  // len is a multiple of 16.
  void (*scores)(const float* q, int64_t ldq, int64_t nr, const float* t, int64_t ldt, int64_t nb, int64_t len,
                 float* s, int64_t lds);
  // acc_r = alpha[r] * acc_r + sum_j p[r * ldp + j] * t_j over len floats; acc_r = acc + r * lda. len % 16 == 0.
  void (*accumulate)(float* acc, int64_t lda, int64_t nr, const float* alpha, const float* p, int64_t ldp,
                     const float* t, int64_t ldt, int64_t nb, int64_t len);
  // s[j] = e^(s[j] - m) in place for j < n; returns the sum.
  float (*exp_sum)(float* s, int64_t n, float m);
  // max_j s[j], n > 0.
  float (*max)(const float* s, int64_t n);
  const char* isa;
};

const TileKernels& tile_kernels();  // the active ISA's

}  // namespace lmlab
