// Blocked attention over a KV cache of fixed-size position blocks holding codec records (kv/codec/kv_codec.h):
// compressed records decoded tile by tile (never materialising the history in float), f32 records (the plain
// cache, the TurboQuant hot window) read in place:
//   1. each query head is rotated into the working domain once (q~ = Pi q, Algorithm 1's rotation applied to
//      the query instead of to every key: <q, k> = <Pi q, Pi k>), then turned into a score row by the K codec
//      (for QJL keys: projected once, S q~);
//   2. per KV head and tile of <= 32 positions, the records are decoded into an L1 tile of score rows and scored
//      against all query rows of the head's group (GQA: the decode is shared by the group); the softmax scale
//      is folded into the query rows;
//   3. online softmax (running max m, sum l, rescale by e^(m_old - m_new)), values accumulated in the rotated
//      domain from the decoded V tile;
//   4. the output is rotated back once per head: out = Pi^T (acc / l).
// Work is split over KV heads x query-token tiles x key ranges (flash-decoding: partial (m, l, acc) of each key
// range merged at the end), so a single decoded token still uses every thread at long context.
// Masking is exact and matches kernels/ref/attention.cpp: query at position P sees keys p <= P and, with a
// window w > 0, p > P - w; softcap c > 0 maps a score s to c tanh(s / c).
// blocked_attend_ref (blocked_attention_ref.cpp) is the plain reference: the codecs' scalar decode_row, one
// position at a time, a plain softmax; tests hold every ISA path of blocked_attend to it.
#pragma once

#include <cstdint>

#include "kv/codec/kv_codec.h"
#include "kv/kv_layer.h"

namespace lmlab {

// One table of blocks holding records of one codec pair. Block b covers positions [b B, (b + 1) B), B =
// block_tokens: K record of (kv head h, position p) at blocks[b] + (h B + p % B) k_rec, V record at
// blocks[b] + n_kv B k_rec + (h B + p % B) v_rec (k_rec, v_rec the codecs' record_bytes()). Null where released.
struct KvRecordTable {
  const KvCodec* k = nullptr;
  const KvCodec* v = nullptr;
  const uint8_t* const* blocks = nullptr;
};

struct BlockedKvView {
  const KvRotation* rotation = nullptr;  // null: the working domain is the input domain
  int64_t n_kv_heads = 0, head_dim = 0, block_tokens = 0;
  int64_t n_tokens = 0;      // positions [0, n_tokens) exist
  int64_t n_compressed = 0;  // positions [0, n_compressed) are in `cold`, [n_compressed, n_tokens) in `hot`
  KvRecordTable cold;
  // Rows of one KV head whose score rows are the first head_dim floats of the K codec's (an f32 codec of
  // head_dim % 16 == 0, whose V rows are as long as the cold V codec's). Unused when n_compressed == n_tokens.
  KvRecordTable hot;
};

// q: [n_q, n_heads, head_dim] at positions [q_pos0, q_pos0 + n_q); out: same shape.
void blocked_attend(const BlockedKvView& cache, int64_t n_heads, const float* q, int64_t n_q, int64_t q_pos0,
                    const AttentionSpec& spec, float* out);
void blocked_attend_ref(const BlockedKvView& cache, int64_t n_heads, const float* q, int64_t n_q, int64_t q_pos0,
                        const AttentionSpec& spec, float* out);

}  // namespace lmlab
