// KvCodec: how a KV cache stores one head vector (the K or the V of one position and KV head) as a record of
// record_bytes() bytes, and what the blocked attention (kv/attention/) reads back from it. Implementations:
// f32 (kv_codec_f32.h: the record is the row itself, read in place), and TurboQuant / affine / f16
// (kv/turboquant/tq_codec.h). A KV layer (kv/kv_layer_blocked.h) stores records in blocks, so its memory is
// records x positions x KV heads whatever the codec.
//
// Score rows: attention never dequantizes a history. It turns records into score rows of row_floats() floats
// (a multiple of 16, the tile kernels' vector) and a query q into q' = prepare_queries(q) such that <q', row>
// is the codec's estimate of <q, x>. Invariant the attention relies on: the first head_dim floats of q' are q
// itself, so a position stored as an f32 row (the TurboQuant hot window) is scored with the same q'.
// Vectors are in the cache's working domain (after KvRotation::forward, when the cache has one).
#pragma once

#include <cstdint>

namespace lmlab {

class KvCodec {
 public:
  virtual ~KvCodec() = default;

  virtual int64_t head_dim() const = 0;
  virtual int64_t record_bytes() const = 0;
  virtual int64_t row_floats() const = 0;
  // Rows per parallel task worth dispatching when encoding (a copy is not worth a thread; a TurboQuant
  // scale sweep is).
  virtual int64_t encode_grain_rows() const = 0;

  // x: n vectors [head_dim] with row stride ldx -> records at rec + i * rec_stride.
  virtual void encode(const float* x, int64_t ldx, int64_t n, uint8_t* rec, int64_t rec_stride) const = 0;
  // The score row of one record, plain scalar code: the reference of decode_tile.
  virtual void decode_row(const uint8_t* rec, float* row) const = 0;
  // Score rows of nb records rec + j * rec_stride (j < nb <= 32): decoded into tile (row stride ldt, room for
  // nb x row_floats()) or, where the records already are the rows, read in place. Returns the first row and
  // sets *ld to the row stride in floats.
  virtual const float* decode_tile(const uint8_t* rec, int64_t rec_stride, int64_t nb, float* tile, int64_t ldt,
                                   int64_t* ld) const = 0;
  // q: [n][head_dim] -> qp: [n][row_floats()].
  virtual void prepare_queries(const float* q, int64_t n, float* qp) const = 0;
  // x [head_dim]: the vector whose inner products the score row estimates; for tests and diagnostics.
  virtual void dequantize(const uint8_t* rec, float* x) const = 0;
};

// The working domain of a cache: K and V are stored after forward(); attention rotates queries in and its output
// back. Orthogonal, so <q, k> is unchanged. TurboQuant's randomized Hadamard rotation (kv/turboquant/wht.h).
class KvRotation {
 public:
  virtual ~KvRotation() = default;
  virtual void forward(const float* x, float* y) const = 0;  // [head_dim]; may alias
  virtual void inverse(const float* y, float* x) const = 0;
};

}  // namespace lmlab
