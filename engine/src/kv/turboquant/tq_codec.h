// TqCodec: encodes head vectors (K or V of one token and KV head) into fixed-size records, and defines what the
// attention kernels compute from a record. Vectors arrive in the cache's working domain: rotated by the
// HeadRotation for the TurboQuant schemes, as they are for the affine baseline.
//
// Record = n_groups group records of group_dim g dims each (head_dim 128: one group; 256: two), each
//   [codes: bits * g / 8 bytes (pack.h: planar for 2, 3, 5 bits, nibbles for 4, bytes for 8)]
//   [QJL signs: g / 8 bytes, K only] [f16 scalars]
//   lloyd_max (TurboQuant, arXiv 2504.19874): x = ||x|| u, u a unit vector whose coordinates are ~ N(0, 1/g)
//     after the rotation (Lemma 1); idx_i = nearest Lloyd-Max centroid of u_i (Algorithm 1, Quant_mse).
//     With QJL (Algorithm 2, Quant_prod): r = u - c[idx], signs = sign(S r), gamma = ||r||; scalars ||x||, gamma.
//     Estimator (Theorem 2, unbiased over S):
//       <q, x> ~= ||x|| ( <q, c[idx]> + gamma . sqrt(pi/2) / g . <S q, signs> ).
//     Without QJL the one scalar is ||x|| / <u, c[idx]> rather than ||x||: an MSE-optimal quantizer shrinks its
//     reconstruction (E <u, c[idx]> = 1 - D_b < 1, the bias TurboQuant_prod exists to remove), and attention sums many
//     reconstructions, so the shrink would not average out; with this scale <x_hat, x> = ||x||^2 (up to fp16 rounding).
//   affine (the lab's baseline, per token, per head, per group): x_i ~= min + scale . q_i, q_i in [0, 2^bits),
//     scalars scale, min.
//   f16 (the uncompressed baseline): the codes are the values in fp16, no scalars.
// Bytes per record (d = head_dim, g = group_dim, n_groups = d / g):
//   lloyd_max + QJL: n_groups (bits g / 8 + g / 8 + 4)  -> 3 bits, d = 128: 68 bytes = 4.25 bits/dim
//   lloyd_max      : n_groups (bits g / 8 + 2)          -> 3 bits, d = 128: 50 bytes = 3.125 bits/dim
//   affine         : n_groups (bits g / 8 + 4)          -> 4 bits, d = 128: 68 bytes; 8 bits: 132 bytes
//
// Score rows: the kernels turn a record into a row of row_floats() floats and a query q (working domain) into a
// row q' = prepare_queries(q) so that <q', row> is the estimate above: row = [||x|| c[idx] (d) | kappa . signs
// (d, QJL only)] with kappa = ||x|| gamma sqrt(pi/2) / g per group, and q' = [q (d) | S q (d, QJL only)].
// decode_row() is the scalar reference of the kernels' fused decode.
#pragma once

#include <cstdint>
#include <memory>

#include "kv/codec/kv_codec.h"
#include "kv/turboquant/lloyd_max.h"
#include "kv/turboquant/qjl.h"

namespace lmlab::turboquant {

enum class TqScheme : uint8_t { lloyd_max, affine, f16 };

struct TqFormat {
  TqScheme scheme = TqScheme::lloyd_max;
  int bits = 3;           // lloyd_max: 2, 3, 4, 5; affine: 4, 8; f16: 16
  bool qjl = false;       // lloyd_max only
  int64_t group_dim = 0;  // g: a power of two in [16, 128]
  int64_t n_groups = 0;

  int64_t head_dim() const { return group_dim * n_groups; }
  int64_t code_bytes() const { return bits * group_dim / 8; }                        // per group
  int64_t sign_bytes() const { return qjl ? group_dim / 8 : 0; }                     // per group
  int64_t n_scalars() const {  // f16 per group
    return scheme == TqScheme::f16 ? 0 : (scheme == TqScheme::affine || qjl) ? 2 : 1;
  }
  int64_t scalar_offset() const { return code_bytes() + sign_bytes(); }
  int64_t group_bytes() const { return scalar_offset() + 2 * n_scalars(); }
  int64_t record_bytes() const { return n_groups * group_bytes(); }
  int64_t row_floats() const { return head_dim() * (qjl ? 2 : 1); }
};

// Throw invalid_input / unsupported naming the option when the combination is not implemented.
TqFormat make_lloyd_max_format(int64_t head_dim, int bits, bool qjl);
TqFormat make_affine_format(int64_t head_dim, int bits);
TqFormat make_f16_format(int64_t head_dim);  // the codes are the fp16 values themselves

inline constexpr double kSqrtHalfPi = 1.2533141373155003;  // sqrt(pi / 2), Definition 1

// The encoder's angle search without QJL (tq_codec.cpp): codes nearest to lambda_s u for kAngleScales scales
// lambda_s in [1 - kAngleSpan, 1 + kAngleSpan]; s = kAngleScales / 2 is lambda = 1 (Algorithm 1's codes). The
// device encoder (cuda/kernels/turboquant.cu) takes the same float scales from angle_scale().
inline constexpr int kAngleScales = 17;   // odd: the middle one is lambda = 1
inline constexpr double kAngleSpan = 0.30;
float angle_scale(int s);  // lambda_s as the encoder multiplies it (s > 0; s = 0 multiplies in double)

class TqCodec final : public KvCodec {
 public:
  TqCodec(const TqFormat& format, uint64_t seed);  // seed draws the QJL matrix
  const TqFormat& format() const { return f_; }
  const Codebook* codebook() const { return cb_; }                // lloyd_max only
  const QjlProjection* projection() const { return qjl_.get(); }  // QJL only

  int64_t head_dim() const override { return f_.head_dim(); }
  int64_t record_bytes() const override { return f_.record_bytes(); }
  int64_t row_floats() const override { return f_.row_floats(); }
  // Lloyd-Max encoding sweeps 17 scales per vector: one vector is worth a task.
  int64_t encode_grain_rows() const override { return f_.scheme == TqScheme::lloyd_max ? 1 : 256; }

  // x: n vectors [head_dim] (working domain) with row stride ldx -> records at rec + i * rec_stride.
  void encode(const float* x, int64_t ldx, int64_t n, uint8_t* rec, int64_t rec_stride) const override;
  // Score row of a record: [row_floats()] (see the file comment).
  void decode_row(const uint8_t* rec, float* row) const override;
  // The fused per-ISA decode of tq_decode.h.
  const float* decode_tile(const uint8_t* rec, int64_t rec_stride, int64_t nb, float* tile, int64_t ldt,
                           int64_t* ld) const override;
  // q: [n][head_dim] -> qp: [n][row_floats()].
  void prepare_queries(const float* q, int64_t n, float* qp) const override;
  // The paper's DeQuant: x_hat [head_dim] = ||x|| (c[idx] + sqrt(pi/2) / g . gamma . S^T signs); for tests
  // (<q, x_hat> equals <q', row> up to rounding).
  void dequantize(const uint8_t* rec, float* x) const override;

 private:
  TqFormat f_;
  const Codebook* cb_ = nullptr;
  std::unique_ptr<QjlProjection> qjl_;
};

}  // namespace lmlab::turboquant
