// The fused decode of TqCodec records into score rows, per instruction set (AVX-512, AVX2, scalar = the codec's
// decode_row; chosen per call from kernels/cpu/isa.h's active_isa()). A tile of <= 32 records is decoded straight
// into an L1-resident tile (permute-table lookup of the packed codes, the table pre-scaled by each record's norm);
// nothing larger than one tile is ever decoded.
#pragma once

#include <cstdint>

#include "kv/turboquant/tq_codec.h"

namespace lmlab::turboquant {

// tile[j][0, row_floats) = codec.decode_row(rec + j * rec_stride), j < nb; tile row stride ldt.
using TqDecodeFn = void (*)(const TqCodec& codec, const uint8_t* rec, int64_t rec_stride, int64_t nb, float* tile,
                            int64_t ldt);

TqDecodeFn tq_decode();  // the active ISA's

}  // namespace lmlab::turboquant
