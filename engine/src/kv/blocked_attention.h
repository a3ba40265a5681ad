// Blocked attention over a KV cache of fixed-size position blocks: TurboQuant / affine / f16 records decoded tile
// by tile (never materialising the history in float), f32 rows (the TurboQuant hot window, and the plain paged
// cache) read in place:
//   1. each query head is rotated into the working domain once (q~ = Pi q, Algorithm 1's rotation applied to
//      the query instead of to every key: <q, k> = <Pi q, Pi k>), and for QJL keys projected once (S q~);
//   2. per KV head and tile of <= 32 positions, the packed records are decoded into an L1 tile of score rows
//      and scored against all query rows of the head's group (GQA: the decode is shared by the group); the
//      softmax scale is folded into the query rows;
//   3. online softmax (running max m, sum l, rescale by e^(m_old - m_new)), values accumulated in the rotated
//      domain from the decoded V tile;
//   4. the output is rotated back once per head: out = Pi^T (acc / l).
// Work is split over KV heads x query-token tiles x key ranges (flash-decoding: partial (m, l, acc) of each key
// range merged at the end), so a single decoded token still uses every thread at long context.
// Masking is exact and matches kernels/ref/attention.cpp: query at position P sees keys p <= P and, with a
// window w > 0, p > P - w; softcap c > 0 maps a score s to c tanh(s / c).
#pragma once

#include <cstdint>

#include "kv/kv_layer.h"
#include "kv/turboquant/tq_codec.h"
#include "kv/turboquant/wht.h"

namespace lmlab {

struct BlockedKvView {
  const turboquant::TqCodec* k_codec = nullptr;  // both null when every position is an f32 row (n_compressed == 0): the
  const turboquant::TqCodec* v_codec = nullptr;  // plain paged cache attends through the same kernels (kv_layer_paged.cpp)
  const turboquant::HeadRotation* rotation = nullptr;  // null: the working domain is the input domain (affine)
  int64_t n_kv_heads = 0, head_dim = 0, block_tokens = 0;
  int64_t n_tokens = 0;      // positions [0, n_tokens) exist
  int64_t n_compressed = 0;  // positions [0, n_compressed) are records, [n_compressed, n_tokens) hot f32 rows
  // Block b covers positions [b B, (b + 1) B), B = block_tokens.
  // blocks[b]: K record of (kv head h, position p) at + (h B + p % B) k_rec, V record at + n_kv B k_rec + (h B + p % B)
  // v_rec.
  const uint8_t* const* blocks = nullptr;
  // f32 rows (working domain): K row (h, p) at hot_k[b] + (p % B) hot_ld_token + h hot_ld_head, V row likewise in
  // hot_v[b]; rows of one head at consecutive positions are hot_ld_token floats apart.
  const float* const* hot_k = nullptr;
  const float* const* hot_v = nullptr;
  int64_t hot_ld_token = 0, hot_ld_head = 0;
};

// q: [n_q, n_heads, head_dim] at positions [q_pos0, q_pos0 + n_q); out: same shape.
void blocked_attend(const BlockedKvView& cache, int64_t n_heads, const float* q, int64_t n_q, int64_t q_pos0,
               const AttentionSpec& spec, float* out);

}  // namespace lmlab
