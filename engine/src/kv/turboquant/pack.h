// Bit packing of quantizer indices and QJL signs, bit-sliced ("planar"): a b-bit index vector of n entries is
// stored as b planes of n bits; plane p holds bit p of every index, entry i at byte i / 8, bit i % 8 (LSB
// first). Size b * n / 8 bytes, exactly as dense as packing indices end to end, but 16 entries of one plane are
// one little-endian uint16, which the AVX-512 kernels turn into a lane mask with a single load (AVX2: one byte
// for 8 lanes). Signs are one plane (bit 1 = non-negative). n must be a multiple of 8.
#pragma once

#include <cstdint>

namespace lmlab::turboquant {

void pack_planes(const uint8_t* idx, int64_t n, int bits, uint8_t* out);    // idx [n] < 2^bits -> out [bits * n / 8]
void unpack_planes(const uint8_t* in, int64_t n, int bits, uint8_t* idx);   // inverse
void pack_signs(const float* x, int64_t n, uint8_t* out);                   // out [n / 8]: bit = (x >= 0)
void unpack_signs(const uint8_t* in, int64_t n, float* s);                  // s [n] = +1 / -1

// Bit i of a plane.
inline int plane_bit(const uint8_t* plane, int64_t i) { return (plane[i >> 3] >> (i & 7)) & 1; }

}  // namespace lmlab::turboquant
