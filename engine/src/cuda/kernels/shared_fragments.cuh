// ldmatrix: four 8 x 8 matrices of 16-bit values from shared memory into mma.sync fragments in one instruction per
// warp (each lane names one matrix row: lanes 8 i .. 8 i + 7 the rows of matrix i). Used by the tiled attention and
// the grouped expert GEMM.
#pragma once

#include <cstdint>

#include "cuda/kernels/async_copy.cuh"

namespace lmlab::kernels::cuda {

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_address(p)));
}

__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_address(p)));
}

}  // namespace lmlab::kernels::cuda
