// KvCodecF32: the uncompressed codec. A record is the head vector's head_dim floats, so the attention reads
// records in place as score rows (no copy) when head_dim is a multiple of 16; otherwise decode_tile copies them
// into rows zero-padded to the tile kernels' 16-float vectors (and queries are padded alike).
#pragma once

#include "kv/codec/kv_codec.h"

namespace lmlab {

class KvCodecF32 final : public KvCodec {
 public:
  explicit KvCodecF32(int64_t head_dim);

  int64_t head_dim() const override { return d_; }
  int64_t record_bytes() const override { return d_ * static_cast<int64_t>(sizeof(float)); }
  int64_t row_floats() const override { return (d_ + 15) / 16 * 16; }
  int64_t encode_grain_rows() const override { return 4096; }

  void encode(const float* x, int64_t ldx, int64_t n, uint8_t* rec, int64_t rec_stride) const override;
  void decode_row(const uint8_t* rec, float* row) const override;
  const float* decode_tile(const uint8_t* rec, int64_t rec_stride, int64_t nb, float* tile, int64_t ldt,
                           int64_t* ld) const override;
  void prepare_queries(const float* q, int64_t n, float* qp) const override;
  void dequantize(const uint8_t* rec, float* x) const override;

 private:
  int64_t d_;
};

}  // namespace lmlab
