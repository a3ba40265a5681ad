// CUDA kernels: one .cu per stem of kernels/ref/ (tests run each against that reference over odd shapes).
// Every pointer is device memory; every launch goes on `stream` and checks its launch error (a bad launch
// is an lmlab::Error, not a later mystery). Activations are f32, weights stay in their stored format
// (f32/f16/bf16 or MLX affine 2-8 bit), accumulation is f32; the KV cache is f16 in the blocks of kv/.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/kernels.h"
#include "kernels/matmul_affine.h"

namespace lmlab::kernels::cuda {

// A weight matrix [rows, cols] in its stored format, on the device. Stacked experts (MoE): expert e's
// matrix starts e * stride_w bytes after `dense` / `quant.packed`, its scales and biases e * stride_s bytes
// after theirs, its bias (if any) e * rows floats after `bias`.
struct DeviceWeight {
  bool affine = false;
  WeightType type = WeightType::bf16;  // dense
  const void* dense = nullptr;         // dense [rows, cols]
  AffineWeight quant{};                // affine: packed / scales / biases are device pointers
  const float* bias = nullptr;         // [rows] or null
  int64_t rows = 0, cols = 0;
  uint64_t stride_w = 0, stride_s = 0;
};

// matmul.cu: Y[n, rows] = X[n, cols] . W^T (+ bias). Few tokens (decode): gemv.cu, a warp per 4 rows with
// 16-byte loads, the block's warps splitting the columns when rows alone cannot fill the SMs; many tokens:
// cuBLAS for dense bf16/f16 (X as two 16-bit parts, f32 accumulation) and for affine (rows dequantized into
// bf16 hi + lo parts, a bounded pass at a time), Sgemm for f32.
// `scratch` holds the split X (and, for an affine weight, a dequantized pass of its rows): matmul_scratch_bytes() of
// it, `affine` when any weight it serves is MLX affine.
uint64_t matmul_scratch_bytes(int64_t rows, int64_t cols, int64_t n, bool affine);

// What a decode GEMV (n <= 8 tokens) can take over from the kernels around it, each a launch and a round trip
// through memory fewer: the RMSNorm of its input (x read as x / sqrt(mean(x^2) + eps) * w, rmsnorm's formula; one
// token, where matmul_norms_input() says the weight's kernel can: 4/8-bit affine weights, whose kernel fills x into
// shared memory anyway) and the residual add of its output (accumulate: y += x . W^T).
struct InputNorm {
  const float* w = nullptr;  // null: x as it is
  float eps = 0.0f;
};
struct GemvFusion {
  InputNorm norm;
  bool accumulate = false;
};
bool matmul_norms_input(const DeviceWeight& w, int64_t n);
void matmul(const DeviceWeight& w, const float* x, float* y, int64_t n, void* scratch, cudaStream_t stream,
            const GemvFusion& fusion = {});

// Several weights over the same X (q, k, v; gate, up): one launch per format in decode, matmul() per part
// otherwise. Every part has the same cols.
inline constexpr int kMaxGemvParts = 3;
struct GemvPart {
  DeviceWeight w;
  float* y;
};
void matmul_parts(const GemvPart* parts, int n_parts, const float* x, int64_t n, void* scratch, cudaStream_t stream,
                  const GemvFusion& fusion = {});

// Gathered GEMV for MoE: slot s (of n_slots) multiplies row x[s / x_div] by expert experts[s]'s matrix of each
// part's stacked weight into that part's y[s]. experts: [n_slots] on the device (the router's choice, never read
// by the host).
void matmul_gathered(const GemvPart* parts, int n_parts, const int32_t* experts, const float* x, int64_t x_div,
                     int64_t n_slots, cudaStream_t stream);

enum class GateActivation { silu, gelu_tanh };  // gated MLPs: SiLU (llama, qwen, mixtral), tanh GELU (gemma)
// The gate and up projections of a gated MLP with its activation: out = act(x . gate^T) * (x . up^T). One token (unless
// DecodeOptions::gate_up_pair is off): one GEMV launch (a warp reads rows i, i + 1 of both weights and applies the
// activation: no launch of its own); otherwise (and weights that cannot share a launch): the products into g and u,
// then gated_mul. Gathered (MoE decode): slot s
// of n_slots reads x row s / x_div through expert experts[s] of both stacked weights.
void matmul_gate_up(const DeviceWeight& gate, const DeviceWeight& up, GateActivation act, const float* x, float* g,
                    float* u, float* out, int64_t n, void* scratch, cudaStream_t stream, const InputNorm& norm = {});
void matmul_gathered_gate_up(const DeviceWeight& gate, const DeviceWeight& up, GateActivation act,
                             const int32_t* experts, const float* x, int64_t x_div, int64_t n_slots, float* g, float* u,
                             float* out, cudaStream_t stream);

// grouped_matmul.cu: the same products as matmul_gathered for many slots (MoE prefill), with the slots grouped by
// expert first so each expert's weight tile is read once per 32 of its slots, on tensor cores at f32 precision (X
// as three bf16 parts, affine levels exact; see the file). experts [n_slots] holds values in
// [0, n_experts) (expert ids, or the VRAM cache's slot ids when streaming), n_experts <= kMaxGroupedExperts.
// group_slots fills `groups` (expert_groups_bytes of device scratch) once; matmul_grouped then serves every part
// and every later matmul over the same routing (the down projection: x_div 1).
inline constexpr int64_t kMaxGroupedExperts = 8192;
inline constexpr int64_t kGroupedMinTokens = 16;  // fewer tokens (decode): the gathered GEMV
bool matmul_grouped_supports(const DeviceWeight& w);  // affine group sizes must be multiples of 32
// The scratch of groups of n_slots whose matmuls take at most x_values values of x: the largest
// grouped_x_values(rows, cols) of their x [rows = n_slots / x_div, cols] (matmul_grouped splits x into its bf16 parts
// there).
int64_t grouped_x_values(int64_t rows, int64_t cols);
uint64_t expert_groups_bytes(int64_t n_slots, int64_t n_experts, int64_t x_values);
void group_slots(const int32_t* experts, int64_t n_slots, int64_t n_experts, void* groups, cudaStream_t stream);
// Every part takes the same x (columns equal); groups_bytes: the scratch's size, checked against x.
void matmul_grouped(const GemvPart* parts, int n_parts, void* groups, uint64_t groups_bytes, int64_t n_slots,
                    int64_t n_experts, const float* x, int64_t x_div, cudaStream_t stream);

// The MoE router's logits [n, E] into `logits` and each token's top-k, as route_topk below picks them. With
// DecodeOptions::fused_routing, decode (n <= 8 tokens) does both in one launch (the router GEMV's last block
// routes); otherwise the matmul, then route_topk.
// done: one device word at 0 (the launch leaves it at 0), per stream that routes.
struct RouteTail {
  int32_t* experts;  // [n, k]
  float* weights;    // [n, k]
  int64_t k;
  bool renormalize;
  unsigned* done;
};
void matmul_route(const DeviceWeight& router, const float* x, float* logits, int64_t n, const RouteTail& route,
                  void* scratch, cudaStream_t stream);

// rmsnorm.cu: y[r] = x[r] / sqrt(mean(x[r]^2) + eps) * w, rows of `dim` (x may equal y).
void rmsnorm(const float* x, const float* w, float* y, int64_t n_rows, int64_t dim, float eps, cudaStream_t stream);
// x += y, then h = norm(x) * w: the residual add and the next norm in one pass.
void add_rmsnorm(float* x, const float* y, const float* w, float* h, int64_t n_rows, int64_t dim, float eps,
                 cudaStream_t stream);

// rope.cu: a layer's q/k step in one launch: per head of q [n, n_heads, head_dim] and k [n, n_kv_heads, head_dim]
// the RMSNorm by q_norm / k_norm (either may be null: no norm), then rotate_half RoPE in place; positions [n] and
// inv_freq [rot_dim / 2] on the device.
inline constexpr int kMaxNormRopeHeadDim = 512;
void qk_norm_rope(float* q, float* k, int64_t n_tokens, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
                  int64_t rot_dim, const float* q_norm, const float* k_norm, float eps, const int32_t* positions,
                  const float* inv_freq, float attention_scaling, cudaStream_t stream);

// activation.cu: out = act(gate) * up, element-wise (out may equal gate).
void gated_mul(GateActivation act, const float* gate, const float* up, float* out, int64_t n, cudaStream_t stream);

// elementwise.cu: the small glue of the forward.
// x[t] = row tokens[t] of the (dense or affine) embedding, times scale.
void embed_rows(const DeviceWeight& w, const int32_t* tokens, int64_t n, float scale, float* x, cudaStream_t stream);
void add_inplace(float* x, const float* y, int64_t n, cudaStream_t stream);  // x += y
void softcap(float* x, int64_t n, float cap, cudaStream_t stream);           // x = cap * tanh(x / cap)

// One layer's f16 KV history in the blocks of kv/kv_layer_blocked.h (device memory): block b holds positions
// [b B, (b + 1) B); K of position p, KV head h at blocks[p / B] + (h B + p % B) head_dim halves, V likewise after
// the block's n_kv_heads B K rows. Blocks a sliding window released are null and never read.
struct KvBlocks {
  uint16_t* const* blocks;  // [n_blocks] device pointers (a device array)
  int64_t block_tokens, n_kv_heads, head_dim;
};

// chained_launch.cu: chained launches (chained_launch.cuh: each decode kernel may be scheduled while the one before
// it finishes), on sm_90+ unless LMLAB_CUDA_CHAINED=0 (read once per process); set_chained_launches for the tests,
// which compare decode with and without. A graph keeps the launches it was captured with.
bool chained_launches();
void set_chained_launches(bool on);

// decode_options.cu: the decode kernel variants the environment chooses (read once per process; docs/cuda.md has
// their A/B figures); set_decode_options for the tests and benchmarks. A graph keeps the kernels it was captured with.
// Tensor cores faster at GQA 4 and 8 (GQA 1-2 not measured: docs/cuda.md, fifteenth session).
inline constexpr int kTqDecodeMmaMinGroup = 4;
// The late splits' shortfall (DecodeOptions::tq_late_positions): 128 positions took the 8B step's encode cost
// (attention with its encode against without) from 4.6 / 5.0 us to 0.8 / 1.2 us at 40K / 100K (H100, twenty-eighth
// session, docs/cuda.md).
inline constexpr int kTqLatePositions = 128;
struct DecodeOptions {
  bool gate_up_pair = true;    // LMLAB_GATE_UP_PAIR=0 turns off: matmul_gate_up in one launch with the activation
  bool fused_routing = false;  // LMLAB_FUSED_ROUTING=1: matmul_route's GEMV routes in its last block
  int tq_decode_min_blocks = 0;  // LMLAB_TQ_DECODE_MIN_BLOCKS=6|8: TurboQuant decode compiled for that many blocks
                                 // per SM (0: the compiler's choice); other values read as the next lower of these
  // TurboQuant decode on tensor cores (tq_decode_mma.cu) for the formats it takes from this many query heads per KV
  // head on (its cost is flat in G, the CUDA-core kernel's grows with G); LMLAB_TQ_DECODE_MMA_MIN_GROUP=N (0 or above
  // 8: never).
  int tq_decode_mma_min_group = kTqDecodeMmaMinGroup;
  // TurboQuant decode attention starts beside the encode of its new tokens and waits for it only before their
  // records (tq_records.cuh's EncodeGate); LMLAB_TQ_EARLY_START=0 turns off.
  bool tq_early_start = true;
  // The tensor-core TurboQuant decode with warps owning positions (tq_decode_warps.cu) where it applies (head_dim 64
  // / 128); LMLAB_TQ_DECODE_WARPS=0 keeps tq_decode_mma.cu's warps owning dims.
  bool tq_decode_warps = true;
  // That kernel's tiles by bulk async copies on mbarriers (tq_records.cuh's issue_tile_bulk) instead of cp.async:
  // 2.5-3% faster at 40K / 100K positions (docs/cuda.md, nineteenth session); LMLAB_TQ_BULK_COPIES=0 turns off.
  bool tq_bulk_copies = true;
  // Prefill attention over TurboQuant records (turboquant.cu's TqPrefillSource): tiles of codebook values with the
  // positions' scalars as column scales where the format allows (else, and with LMLAB_TQ_PREFILL_CODES=0, decoded
  // f32 values as hi + lo parts). 1.29x the decoded values' attention on the H100 (twentieth session); its fix
  // (215e2e2) passed AttentionMatchesTheCpuOverTheSameRecords and TiledDecode* there in the twenty-first.
  bool tq_prefill_codes = true;
  // A one-token TurboQuant decode's late splits (tq_splits.h: those whose blocks wait for the encode's SMs) hold
  // this many positions fewer; LMLAB_TQ_LATE_POSITIONS=N (0 to 4095; 0: even splits).
  int tq_late_positions = kTqLatePositions;
  // How many splits are late: 0 counts them from the encode's blocks and the decode's blocks per SM (turboquant.cu's
  // late_decode_splits); LMLAB_TQ_LATE_SPLITS=N (1 to 15) sets it.
  int tq_late_splits = 0;
  // The warps decode's O += P V as O^T += V^T P^T where a KV head has at most 4 query heads (tq_decode_warps.cu):
  // their hi and lo parts are the MMA's 8 columns, so half the MMAs and accumulators; LMLAB_TQ_PV_COLUMNS=1 (off until
  // measured).
  bool tq_pv_columns = false;
};
DecodeOptions decode_options();
void set_decode_options(const DecodeOptions& o);

// attention.cu
// Positions come from the device (`positions` [n]), so a captured CUDA graph replays at any position.
// Writes k, v [n, n_kv_heads, head_dim] (f32) as f16 at positions[0..n).
void kv_write(const KvBlocks& kv, const float* k, const float* v, int64_t n, const int32_t* positions,
              cudaStream_t stream);
// rope.cu: qk_norm_rope (n_kv_heads, head_dim: the cache's), then k as roped and v written into the cache as
// kv_write writes them, in one launch.
void qk_norm_rope_kv_write(float* q, float* k, const float* v, const KvBlocks& kv, int64_t n_tokens, int64_t n_heads,
                           int64_t rot_dim, const float* q_norm, const float* k_norm, float eps,
                           const int32_t* positions, const float* inv_freq, float attention_scaling,
                           cudaStream_t stream);
// Causal GQA attention of q [n_q, n_heads, head_dim], query t at positions[t], over the cached positions
// <= its own (window, softcap as kernels::AttentionArgs) into out (same shape as q). Flash-decoding: each
// (query, KV head) is split over up to `max_splits` position ranges (sized for `n_kv_bound` positions, an
// upper bound of the history) whose partial softmax states are merged in a second pass; the heads sharing a
// KV head read it once. Never forms an n_q x n_kv matrix.
// Chunks of kPrefillAttentionMinQueries queries or more (head_dim a multiple of 16, as every real model's):
// prefill_attention.cuh's tiled tensor-core kernel (history tiles shared by the chunk's query rows, staged by
// cp.async). Fewer queries (decode) with n_kv_bound >= tiled_decode_min_positions(): the same kernel with the history
// split over blocks, merged by a second kernel; else a flash-decoding kernel on the CUDA cores (a lane per
// position). Attention alone on the H100 (docs/cuda.md, twenty-first session), tiled / flash-decoding at 4K / 16K /
// 100K positions: 8B shape 17.6 / 16.4, 40.3 / 55.6, 165 / 240 us; 30b-a3b 15.6 / 19.8, 26.0 / 44.5, 93.6 / 194. The
// decode graph's bound is at least 4096 (or the context), so decode takes the tiled kernel from a 4096-token context
// and flash-decoding under it.
inline constexpr int kMaxAttentionSplits = 256;
// Blocks the decode attention kernels aim to launch (split-K fills the GPU up to this): SMs x blocks per SM (4, or
// LMLAB_ATTENTION_BLOCKS_PER_SM to measure others), read once per process.
int64_t attention_target_blocks();
// LMLAB_ATTENTION_BLOCKS_PER_SM, or 0 when unset (the split tiled decode then sizes its splits to one wave).
int attention_blocks_per_sm_override();
inline constexpr int64_t kPrefillAttentionMinQueries = 16;
inline constexpr int64_t kTiledDecodeMinPositions = 4096;
// kTiledDecodeMinPositions, or LMLAB_TILED_DECODE_MIN_POSITIONS (to measure the crossover with one binary), read once.
int64_t tiled_decode_min_positions();
uint64_t attention_scratch_bytes(int64_t n_q, int64_t n_heads, int64_t head_dim, int max_splits);
// The splits a decode attention kernel cuts each history into (its blocks: `blocks` per split, query blocks x KV
// heads): enough to reach target_blocks, at least `min_positions` per split, at most max_splits and what
// attention_scratch_bytes(n_q, n_heads, head_dim, max_splits) holds.
int decode_split_count(int64_t target_blocks, int64_t blocks, int64_t n_kv, int64_t min_positions, int max_splits,
                       int64_t n_q, int64_t n_heads, int64_t head_dim);
// The device's streaming multiprocessors (132 when the query fails), read once per process.
int multiprocessor_count();
void attention(const KvBlocks& kv, const float* q, float* out, int64_t n_q, int64_t n_heads, const int32_t* positions,
               int64_t n_kv_bound, float scale, float softcap, int64_t window, int max_splits, void* scratch,
               cudaStream_t stream);

// turboquant.cu: the TurboQuant / affine KV records of kv/turboquant/tq_codec.h in the same blocks. A record
// codec on the device (the constants are device pointers; cuda/device_kv.h uploads them from the layer's spec).
inline constexpr int kTqLloydMax = 0, kTqAffine = 1;
struct TqDeviceCodec {
  int scheme = kTqLloydMax;
  int bits = 0;         // lloyd_max 2..5, affine 4 or 8
  int qjl = 0;          // 1: K = codes + QJL signs of the residual (lloyd_max only)
  int group_dim = 0;    // g: a power of two in [16, 128]
  int n_groups = 0;     // head_dim / g
  int code_bytes = 0;   // per group: bits g / 8
  int scalar_offset = 0;  // per group: code bytes + sign bytes; f16 scalars follow
  int group_bytes = 0;
  int record_bytes = 0;   // n_groups * group_bytes
  const float* centroids = nullptr;   // lloyd_max: [2^bits] (Codebook of N(0, 1/g))
  const float* boundaries = nullptr;  // lloyd_max: [2^bits - 1]
  const float* qjl_matrix = nullptr;  // QJL: S [g, g] row-major
};
// One layer's record blocks: K record of (KV head h, position p) at blocks[p / B] + (h B + p % B) k.record_bytes,
// V record at blocks[p / B] + n_kv_heads B k.record_bytes + (h B + p % B) v.record_bytes (kv/attention/
// blocked_attention.h's KvRecordTable). Rotation (TurboQuant): group gi of a head vector is rotated by
// D2 H D1 / sqrt(g) with the signs rot_d1 / rot_d2 [head_dim] at gi g (kv/turboquant/wht.h); null for affine.
struct TqKvBlocks {
  uint8_t* const* blocks;  // [n_blocks] device pointers (a device array)
  int64_t block_tokens, n_kv_heads, head_dim;
  TqDeviceCodec k, v;
  const float* rot_d1 = nullptr;
  const float* rot_d2 = nullptr;
  float rot_inv_sqrt = 0.0f;  // 1 / sqrt(g) as RandomizedHadamard rounds it
};
// Encodes k, v [n, n_kv_heads, head_dim] (f32, input domain) into records at positions[0..n): rotation, codes
// (lloyd_max without QJL: the CPU encoder's angle search) and f16 scalars with the CPU's float and double
// operations in the CPU's order, so the records are byte-identical to TqCodec::encode's (QJL signs: equal
// except where S r is within float rounding of 0, the CPU projecting through its own matmul).
void tq_kv_write(const TqKvBlocks& kv, const float* k, const float* v, int64_t n, const int32_t* positions,
                 cudaStream_t stream);
// attention() over TurboQuant / affine records: the query rotated once per block (and projected by S for QJL
// keys), scores and the V accumulation on the packed codes in the rotated domain, the output rotated back once.
// Same arguments, scratch (attention_scratch_bytes) and split-K as attention().
// TurboQuant / affine decode (fewer than kPrefillAttentionMinQueries queries, keys without QJL, head_dim a multiple
// of 16) from this bound of positions on: prefill_attention.cuh's tensor-core kernel over TqPrefillSource with the
// history split over blocks (as the f16 tiled decode), merged and rotated back by the TurboQuant merge; below it,
// flash-decoding: on tensor cores (tq_decode_mma.cu) when tq_decode_on_tensor_cores, else on the CUDA cores.
// LMLAB_TQ_TILED_DECODE_MIN_POSITIONS sets the bound (read once; default kTqTiledDecodeOff: measured slower);
// set_tq_tiled_decode_min_positions for the tests.
inline constexpr int64_t kTqTiledDecodeOff = INT64_MAX;
int64_t tq_tiled_decode_min_positions();
void set_tq_tiled_decode_min_positions(int64_t n);
// Whether flash-decoding over these records with `group` query heads per KV head runs on tensor cores
// (DecodeOptions::tq_decode_mma_min_group and a format it takes: Lloyd-Max keys without QJL, 4-bit Lloyd-Max values,
// groups of >= 32 dims, head_dim a multiple of 32).
bool tq_decode_on_tensor_cores(const TqKvBlocks& kv, int64_t group);
// after_encode: the last launch on the stream was tq_kv_write of these queries' positions (ascending from
// positions[0]), so the decode kernels may start beside it (DecodeOptions::tq_early_start; tq_records.cuh's
// EncodeGate).
void tq_attention(const TqKvBlocks& kv, const float* q, float* out, int64_t n_q, int64_t n_heads,
                  const int32_t* positions, int64_t n_kv_bound, float scale, float softcap, int64_t window,
                  int max_splits, void* scratch, cudaStream_t stream, bool after_encode = false);

// route_topk.cu: per token, softmax over n_experts logits, the k largest (ties: lower index; NaN ones last, weights
// NaN, as kernels::cpu::route_topk), renormalised.
// check_top_k throws for a k the kernels do not take (more than 16, or than the experts).
void check_top_k(int64_t k, int64_t n_experts);
void route_topk(const float* logits, int64_t n_tokens, int64_t n_experts, int64_t k, bool renormalize,
                int32_t* experts, float* weights, cudaStream_t stream);
// out[t] = sum over token t's k slots, in ascending expert order, of weights[slot] * slot_out[slot].
void moe_combine(const float* slot_out, const int32_t* experts, const float* weights, int64_t n_tokens, int64_t k,
                 int64_t hidden, float* out, cudaStream_t stream);
// rmsnorm.cu: moe_combine's y for the token's expert outputs, then add_rmsnorm(x, y, w, h), in one launch (y is
// scratch for shapes that launch does not take: then the two kernels run).
void moe_combine_add_rmsnorm(float* x, const float* slot_out, const int32_t* experts, const float* weights, int64_t k,
                             float* y, const float* w, float* h, int64_t n_rows, int64_t dim, float eps,
                             cudaStream_t stream);

// host_handshake.cu: a MoE layer of a captured decode graph with streamed experts hands its routed (and predicted)
// ids to the host and waits for the host to name their VRAM slots (cuda/routing_mailbox.h is the host side). The
// counts only grow: publication k sets `ready` to k, the host answers by setting `go` to k.
struct RoutingMailboxView {
  uint32_t* device_count = nullptr;  // device memory: layers published so far
  uint32_t* ready = nullptr;         // mapped host memory, written by the GPU
  const uint32_t* go = nullptr;      // mapped host memory, written by the host
  int32_t* ids = nullptr;            // mapped host memory [capacity]
  int32_t* predicted = nullptr;      // mapped host memory [capacity]
  const int32_t* slots = nullptr;    // mapped host memory [capacity]
  int64_t capacity = 0;
};
// Copies ids[n] (and predicted[n] when not null) to the host, then publishes the next count. Launched in the plain
// way, so it runs after everything before it in the stream has completed.
void publish_routing(const RoutingMailboxView& m, const int32_t* ids, const int32_t* predicted, int64_t n,
                     cudaStream_t stream);
// Waits (one warp, polling the host's `go`) until the host has answered the latest publication, then copies the
// host's slots[n] into slot_ids.
void await_slots(const RoutingMailboxView& m, int32_t* slot_ids, int64_t n, cudaStream_t stream);
// Loads both kernels now: under lazy module loading a first use may synchronise the device, which must never happen
// while a graph waits in await_slots for this thread.
void load_routing_handshake();

}  // namespace lmlab::kernels::cuda
