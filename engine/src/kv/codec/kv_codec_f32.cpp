#include "kv/codec/kv_codec_f32.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "lmlab/error.h"

namespace lmlab {

KvCodecF32::KvCodecF32(int64_t head_dim) : d_(head_dim) {
  if (head_dim <= 0)
    throw Error(ErrorKind::invalid_input, "kv cache", "head_dim must be positive, got " + std::to_string(head_dim));
}

void KvCodecF32::encode(const float* x, int64_t ldx, int64_t n, uint8_t* rec, int64_t rec_stride) const {
  for (int64_t i = 0; i < n; ++i)
    std::memcpy(rec + i * rec_stride, x + i * ldx, static_cast<size_t>(d_) * sizeof(float));
}

void KvCodecF32::decode_row(const uint8_t* rec, float* row) const {
  std::memcpy(row, rec, static_cast<size_t>(d_) * sizeof(float));
  std::fill(row + d_, row + row_floats(), 0.0f);
}

const float* KvCodecF32::decode_tile(const uint8_t* rec, int64_t rec_stride, int64_t nb, float* tile, int64_t ldt,
                                     int64_t* ld) const {
  if (d_ % 16 == 0 && rec_stride % static_cast<int64_t>(sizeof(float)) == 0) {
    *ld = rec_stride / static_cast<int64_t>(sizeof(float));
    return reinterpret_cast<const float*>(rec);
  }
  for (int64_t j = 0; j < nb; ++j) decode_row(rec + j * rec_stride, tile + j * ldt);
  *ld = ldt;
  return tile;
}

void KvCodecF32::prepare_queries(const float* q, int64_t n, float* qp) const {
  const int64_t w = row_floats();
  for (int64_t t = 0; t < n; ++t) {
    std::memcpy(qp + t * w, q + t * d_, static_cast<size_t>(d_) * sizeof(float));
    std::fill(qp + t * w + d_, qp + (t + 1) * w, 0.0f);
  }
}

void KvCodecF32::dequantize(const uint8_t* rec, float* x) const {
  std::memcpy(x, rec, static_cast<size_t>(d_) * sizeof(float));
}

}  // namespace lmlab
