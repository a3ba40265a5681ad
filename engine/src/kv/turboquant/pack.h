// Bit packing of quantizer indices and QJL signs; every layout is exactly b * n / 8 bytes for n b-bit indices
// (n a multiple of 8), chosen so the attention kernels turn packed codes into lane indices in a few instructions:
//   b = 1, 2, 3, 5  planar (bit-sliced): b planes of n bits; plane p holds bit p of every index, entry i at byte
//                i / 8, bit i % 8 (LSB first). 16 entries of a plane are one little-endian uint16, which AVX-512
//                loads straight into a lane mask (AVX2: one byte for 8 lanes).
//   b = 4        nibbles, 16 entries per little-endian uint64: entry j of the word at bit 32 (j % 2) + 4 (j / 2)
//                (even entries in the low half). Broadcast to every 64-bit lane and shifted right by
//                4 (lane / 2) per 32-bit lane, each 32-bit lane's low 4 bits are its own entry, in order.
//   b = 8        bytes.
// Signs are one plane (bit 1 = non-negative).
#pragma once

#include <cstdint>

namespace lmlab::turboquant {

void pack_planes(const uint8_t* idx, int64_t n, int bits, uint8_t* out);   // idx [n] < 2^bits -> out [bits * n / 8]
void unpack_planes(const uint8_t* in, int64_t n, int bits, uint8_t* idx);  // inverse
void pack_nibbles(const uint8_t* idx, int64_t n, uint8_t* out);            // idx [n] < 16 -> out [n / 2]; n % 16 == 0
void unpack_nibbles(const uint8_t* in, int64_t n, uint8_t* idx);
// The layout of `bits` (see above): planar for 1, 2, 3, 5, nibbles for 4, bytes for 8.
void pack_codes(const uint8_t* idx, int64_t n, int bits, uint8_t* out);
void unpack_codes(const uint8_t* in, int64_t n, int bits, uint8_t* idx);
void pack_signs(const float* x, int64_t n, uint8_t* out);   // out [n / 8]: bit = (x >= 0)
void unpack_signs(const uint8_t* in, int64_t n, float* s);  // s [n] = +1 / -1

// Bit i of a plane.
inline int plane_bit(const uint8_t* plane, int64_t i) {
  return (plane[i >> 3] >> (i & 7)) & 1;
}

}  // namespace lmlab::turboquant
