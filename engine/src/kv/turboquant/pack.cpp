// Planar bit packing (see pack.h).
#include "kv/turboquant/pack.h"

#include <cstring>

namespace lmlab::turboquant {

void pack_planes(const uint8_t* idx, int64_t n, int bits, uint8_t* out) {
  const int64_t plane_bytes = n / 8;
  std::memset(out, 0, static_cast<size_t>(bits * plane_bytes));
  for (int p = 0; p < bits; ++p) {
    uint8_t* plane = out + p * plane_bytes;
    for (int64_t i = 0; i < n; ++i) plane[i >> 3] |= static_cast<uint8_t>(((idx[i] >> p) & 1) << (i & 7));
  }
}

void unpack_planes(const uint8_t* in, int64_t n, int bits, uint8_t* idx) {
  const int64_t plane_bytes = n / 8;
  for (int64_t i = 0; i < n; ++i) {
    int v = 0;
    for (int p = 0; p < bits; ++p) v |= plane_bit(in + p * plane_bytes, i) << p;
    idx[i] = static_cast<uint8_t>(v);
  }
}

void pack_nibbles(const uint8_t* idx, int64_t n, uint8_t* out) {
  for (int64_t w = 0; w < n / 16; ++w) {
    uint64_t word = 0;
    for (int j = 0; j < 16; ++j) word |= static_cast<uint64_t>(idx[16 * w + j] & 15) << (32 * (j % 2) + 4 * (j / 2));
    for (int b = 0; b < 8; ++b) out[8 * w + b] = static_cast<uint8_t>(word >> (8 * b));
  }
}

void unpack_nibbles(const uint8_t* in, int64_t n, uint8_t* idx) {
  for (int64_t w = 0; w < n / 16; ++w) {
    uint64_t word = 0;
    for (int b = 0; b < 8; ++b) word |= static_cast<uint64_t>(in[8 * w + b]) << (8 * b);
    for (int j = 0; j < 16; ++j) idx[16 * w + j] = static_cast<uint8_t>((word >> (32 * (j % 2) + 4 * (j / 2))) & 15);
  }
}

void pack_codes(const uint8_t* idx, int64_t n, int bits, uint8_t* out) {
  if (bits == 8)
    std::memcpy(out, idx, static_cast<size_t>(n));
  else if (bits == 4)
    pack_nibbles(idx, n, out);
  else
    pack_planes(idx, n, bits, out);
}

void unpack_codes(const uint8_t* in, int64_t n, int bits, uint8_t* idx) {
  if (bits == 8)
    std::memcpy(idx, in, static_cast<size_t>(n));
  else if (bits == 4)
    unpack_nibbles(in, n, idx);
  else
    unpack_planes(in, n, bits, idx);
}

void pack_signs(const float* x, int64_t n, uint8_t* out) {
  std::memset(out, 0, static_cast<size_t>(n / 8));
  for (int64_t i = 0; i < n; ++i) out[i >> 3] |= static_cast<uint8_t>((x[i] >= 0.0f ? 1 : 0) << (i & 7));
}

void unpack_signs(const uint8_t* in, int64_t n, float* s) {
  for (int64_t i = 0; i < n; ++i) s[i] = plane_bit(in, i) ? 1.0f : -1.0f;
}

}  // namespace lmlab::turboquant
