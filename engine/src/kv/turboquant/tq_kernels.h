// The vector kernels of attention on the TurboQuant cache, per instruction set (AVX-512, AVX2, scalar; chosen
// per call from kernels/cpu/isa.h's active_isa(), so tests can walk every path with force_isa()).
// A tile of <= 32 keys is decoded from its packed records straight into an L1-resident tile of score rows
// (permute-table lookup of the packed codes, the table pre-scaled by each record's norm), then the tile's scores
// for all query rows of one KV head are a small register-blocked GEMM and its values are accumulated the same
// way. Nothing larger than one tile is ever decoded.
#pragma once

#include <cstdint>

#include "kv/turboquant/tq_codec.h"

namespace lmlab::turboquant {

struct TqKernels {
  // tile[j][0, row_floats) = codec.decode_row(rec + j * rec_stride), j < nb; tile row stride ldt.
  void (*decode)(const TqCodec& codec, const uint8_t* rec, int64_t rec_stride, int64_t nb, float* tile, int64_t ldt);
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

const TqKernels& tq_kernels();  // the active ISA's

}  // namespace lmlab::turboquant
