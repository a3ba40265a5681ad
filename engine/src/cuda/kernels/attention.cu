// Attention over the blocked f16 KV cache on the GPU. Chunks of many queries (head_dim a multiple of 16, as every
// real model's) take the tiled tensor-core kernel of prefill_attention.cuh (history tiles staged by cp.async, shared
// by a block's query rows; the G query heads of a KV head are rows of one block). Decode takes it too over long
// histories (tiled_decode_min_positions()), with the history split over blocks whose (max, sum, output) states
// attention_merge_kernel combines; shorter ones (and other head_dims) take the flash-decoding kernel below. Block
// (KV head, split, query): its 4 warps walk the split's visible positions, a lane per position, each key and value
// row read once for the G query heads that share the KV head (GQA), with an online softmax per head in registers;
// the warps' states merge in shared memory, the splits' in the merge kernel. No n_q x n_kv matrix is ever formed.
#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <type_traits>

#include "cuda/cuda_check.h"
#include "cuda/kernels/chained_launch.cuh"
#include "cuda/kernels/kernels_cuda.h"
#include "cuda/kernels/prefill_attention.cuh"
#include "cuda/kernels/reduce.cuh"
#include "cuda/kernels/split_merge.cuh"
#include "cuda/kernels/tile_copy_steps.h"

namespace lmlab::kernels::cuda {

namespace {

constexpr int kWarps = 4;
constexpr int kMaxGroup = 8;  // query heads per KV head handled by one block

struct AttnParams {
  KvBlocks kv;
  const float* q;
  float* out;
  float* part_o;   // [n_q, n_heads, splits, head_dim] unnormalised outputs
  float* part_ml;  // [n_q, n_heads, splits, 2] running max and sum
  const int32_t* positions;  // [n_q]
  int64_t n_heads, window;
  int group;
  float scale, softcap;
};

// K row of position j, KV head kh (its V row is n_kv_heads B head_dim values further). 32-bit division (positions
// and block sizes fit): the 64-bit one is a ~70-instruction call, and the decode kernel's lanes paid one per row.
__device__ __forceinline__ const uint16_t* key_row(const KvBlocks& kv, int64_t j, int64_t kh) {
  const uint32_t B = static_cast<uint32_t>(kv.block_tokens), jj = static_cast<uint32_t>(j), b = jj / B;
  return kv.blocks[b] + (kh * B + (jj - b * B)) * kv.head_dim;
}

__device__ __forceinline__ float h2f(uint16_t v) { return __half2float(__ushort_as_half(v)); }

// The scaled queries' floats in the decode kernel's shared memory: GM rows of D, rounded up to 16 bytes.
__host__ __device__ __forceinline__ int query_floats(int gm, int64_t D) { return static_cast<int>((gm * D + 3) / 4 * 4); }

// A split's share of a history of `len` visible positions: whole warp tiles (32 positions), at least one per warp,
// worked out from the query's own position, not the bound the launch was sized for: a decode graph captured for a
// 4096 bound leaves the splits past a 512-position history empty (they exit at once) instead of handing each of its
// 33 splits 15 positions, one warp's partial tile (the short-history cost of the twelfth session's profile).
__device__ __forceinline__ int64_t split_share(int64_t len, int splits) {
  const int64_t per = (len + splits - 1) / splits;
  return max(int64_t{kWarps * 32}, (per + 31) / 32 * 32);
}

// DPL: head-dim elements per lane in the V sum (head_dim <= 32 * DPL); element i of a lane is d = DPL lane + i when
// head_dim == 32 DPL (one 2-16 byte load per V row and lane), else d = lane + 32 i. GM: the most query heads per KV
// head it serves (registers: G x DPL accumulators). A warp takes tiles of 32 positions, a lane per position for the
// scores (its key row by 16-byte loads, dotted with the G scaled query rows broadcast from shared memory, so the
// softmax reduces once per tile and head); the tile's V rows (lanes over head_dim, packed f16 in registers) are
// loaded before the scores are computed, so a tile costs one memory round trip for K and V together rather than
// one per 8 rows, and the probabilities go to the other lanes through shared memory. Each lane keeps its share of
// the row sums (reduced once at the end); O is rescaled only in tiles that raise a head's max.
template <int DPL, int GM>
__global__ void __launch_bounds__(kWarps * 32) attention_kernel(AttnParams a) {
  chain_enter();
  constexpr int kWords = (DPL + 1) / 2;                         // a V row's share of a lane: f16 pairs
  constexpr int kAhead = kWords <= 2 ? 32 : 64 / kWords;        // V rows held in registers at once (<= 64 words)
  // [GM][D] scaled queries (query_floats), [kWarps][GM][32] probabilities, then [kWarps][G][D] outputs, [kWarps][G][2]
  // (m, l), [kWarps][G] weights and [G][2] (M, L)
  extern __shared__ float smem[];
  const int kh = blockIdx.x, split = blockIdx.y, splits = gridDim.y, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t t = blockIdx.z;
  const int D = static_cast<int>(a.kv.head_dim), G = a.group;
  const int64_t pos = a.positions[t];
  const int64_t lo = a.window > 0 ? max(int64_t{0}, pos - a.window + 1) : 0;
  const int64_t per = split_share(pos - lo + 1, splits);
  const int64_t j0 = lo + split * per, j1 = min(pos + 1, j0 + per);
  if (j0 >= j1) {  // past the history (never split 0): an empty state, which the merge gives no weight
    if (static_cast<int>(threadIdx.x) < G) {
      const int64_t slot = (t * a.n_heads + kh * G + threadIdx.x) * splits + split;
      a.part_ml[slot * 2] = -INFINITY, a.part_ml[slot * 2 + 1] = 0.0f;
    }
    return;
  }

  float* qs = smem;
  float* ps = qs + query_floats(GM, D) + warp * GM * 32;  // this warp's probabilities, [GM][32], 16-byte aligned
  const float* qb = a.q + (t * a.n_heads + static_cast<int64_t>(kh) * G) * D;  // the G heads: one [G][D] run
  for (int e = threadIdx.x; e < G * D; e += blockDim.x) qs[e] = qb[e] * a.scale;
  __syncthreads();
  const bool vec = D % 8 == 0;         // 16-byte key loads (rows start 16-byte aligned then)
  const bool dense_v = D == 32 * DPL;  // a lane's V elements are adjacent
  const int64_t v_side = a.kv.n_kv_heads * a.kv.block_tokens * D;  // a V row's offset from its K row

  float acc[GM][DPL], m[GM], l[GM];
#pragma unroll
  for (int g = 0; g < GM; ++g) {
    m[g] = -INFINITY, l[g] = 0.0f;
#pragma unroll
    for (int i = 0; i < DPL; ++i) acc[g][i] = 0.0f;
  }
  for (int64_t base = j0 + warp * 32; base < j1; base += kWarps * 32) {
    const int64_t j = base + lane;
    const bool valid = j < j1;
    const int n_valid = static_cast<int>(min(int64_t{32}, j1 - base));
    const uint16_t* kr = valid ? key_row(a.kv, j, kh) : nullptr;
    // The first kAhead V rows of the tile, each lane its elements (zeros past the valid rows), in flight with the keys.
    uint32_t vw[kAhead][kWords];
    auto load_v = [&](int b0) {
#pragma unroll
      for (int b = 0; b < kAhead; ++b) {
        const uint16_t* vr = reinterpret_cast<const uint16_t*>(
            __shfl_sync(0xffffffffu, reinterpret_cast<uintptr_t>(kr), (b0 + b) & 31));
        const bool ok = b0 + b < n_valid;
#pragma unroll
        for (int w = 0; w < kWords; ++w) vw[b][w] = 0u;
        if (!ok) continue;
        vr += v_side;
        if (dense_v) {
          if constexpr (DPL == 8) {
            const uint4 x = *reinterpret_cast<const uint4*>(vr + 8 * lane);
            vw[b][0] = x.x, vw[b][1] = x.y, vw[b][2] = x.z, vw[b][3] = x.w;
          } else if constexpr (DPL == 4) {
            const uint2 x = *reinterpret_cast<const uint2*>(vr + 4 * lane);
            vw[b][0] = x.x, vw[b][1] = x.y;
          } else if constexpr (DPL == 2) {
            vw[b][0] = *reinterpret_cast<const uint32_t*>(vr + 2 * lane);
          } else {
            vw[b][0] = vr[lane];
          }
        } else {
#pragma unroll
          for (int i = 0; i < DPL; ++i) {
            const int d = lane + 32 * i;
            const uint32_t h = d < D ? vr[d] : 0u;
            vw[b][i / 2] |= h << (16 * (i & 1));
          }
        }
      }
    };
    load_v(0);

    float s[GM];
#pragma unroll
    for (int g = 0; g < GM; ++g) s[g] = 0.0f;
    if (valid && vec) {
      // Every 16-byte piece of the key row in flight before the first is used (up to 128 elements at a time).
      constexpr int kChunks = 16;
      for (int d0 = 0; d0 < D; d0 += 8 * kChunks) {
        uint4 raw[kChunks];
#pragma unroll
        for (int c = 0; c < kChunks; ++c)
          if (d0 + 8 * c < D) raw[c] = *reinterpret_cast<const uint4*>(kr + d0 + 8 * c);
#pragma unroll
        for (int c = 0; c < kChunks; ++c) {
          if (d0 + 8 * c >= D) break;
          const uint32_t u[4] = {raw[c].x, raw[c].y, raw[c].z, raw[c].w};
          float kf[8];
#pragma unroll
          for (int i = 0; i < 4; ++i) {
            const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&u[i]));
            kf[2 * i] = f.x, kf[2 * i + 1] = f.y;
          }
          const int d = d0 + 8 * c;
#pragma unroll
          for (int g = 0; g < GM; ++g) {
            if (g >= G) break;
            const float4 q0 = *reinterpret_cast<const float4*>(qs + g * D + d);
            const float4 q1 = *reinterpret_cast<const float4*>(qs + g * D + d + 4);
            s[g] += q0.x * kf[0] + q0.y * kf[1] + q0.z * kf[2] + q0.w * kf[3] + q1.x * kf[4] + q1.y * kf[5] +
                    q1.z * kf[6] + q1.w * kf[7];
          }
        }
      }
    } else if (valid) {
      for (int d = 0; d < D; ++d) {
        const float kf = h2f(kr[d]);
#pragma unroll
        for (int g = 0; g < GM; ++g) {
          if (g >= G) break;
          s[g] += qs[g * D + d] * kf;
        }
      }
    }
    // Online softmax per head: the tile's max by the warp (lane 0's position is always valid, so it is finite), the
    // probability as exp2 (one FFMA and the ex2 unit's instruction), each lane's share of the sum kept apart.
#pragma unroll
    for (int g = 0; g < GM; ++g) {
      if (g >= G) break;
      float sg = s[g];
      if (a.softcap > 0.0f) sg = a.softcap * tanhf(sg / a.softcap);
      if (!valid) sg = -INFINITY;
      const float m_new = fmaxf(m[g], warp_max(sg));
      const float m_l2 = m_new * prefill::kLog2e;
      const float p = valid ? exp2f(fmaf(sg, prefill::kLog2e, -m_l2)) : 0.0f;
      if (m_new != m[g]) {  // warp-uniform
        const float corr = m[g] == -INFINITY ? 0.0f : exp2f(fmaf(m[g], prefill::kLog2e, -m_l2));
        l[g] *= corr;
#pragma unroll
        for (int i = 0; i < DPL; ++i) acc[g][i] *= corr;
        m[g] = m_new;
      }
      l[g] += p;
      ps[g * 32 + lane] = p;
    }
    __syncwarp();
    // O += P V over the tile's rows, kAhead at a time (all of them but for head_dim 256).
    for (int b0 = 0; b0 < n_valid; b0 += kAhead) {
      if (b0 > 0) load_v(b0);
#pragma unroll
      for (int b = 0; b < kAhead; b += 4) {
        float vf[4][DPL];
#pragma unroll
        for (int bb = 0; bb < 4; ++bb)
#pragma unroll
          for (int w = 0; w < kWords; ++w) {
            const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&vw[b + bb][w]));
            vf[bb][2 * w] = f.x;
            if (2 * w + 1 < DPL) vf[bb][2 * w + 1] = f.y;
          }
#pragma unroll
        for (int g = 0; g < GM; ++g) {
          if (g >= G) break;
          const float4 p4 = *reinterpret_cast<const float4*>(ps + g * 32 + ((b0 + b) & 31));  // 0 past valid rows
#pragma unroll
          for (int i = 0; i < DPL; ++i)
            acc[g][i] += p4.x * vf[0][i] + p4.y * vf[1][i] + p4.z * vf[2][i] + p4.w * vf[3][i];
        }
      }
    }
    __syncwarp();  // the next tile overwrites ps
  }

  // Merge the warps' states: each head's weights once, then every (head, element) by one thread.
  float* so = qs + query_floats(GM, D) + kWarps * GM * 32;
  float* sml = so + kWarps * G * D;
  float* wts = sml + kWarps * G * 2;  // [kWarps][G] weights, then [G] (M, L)
#pragma unroll
  for (int g = 0; g < GM; ++g) {
    if (g >= G) break;
    l[g] = warp_sum(l[g]);
#pragma unroll
    for (int i = 0; i < DPL; ++i) {
      const int d = dense_v ? DPL * lane + i : lane + 32 * i;
      if (d < D) so[(warp * G + g) * D + d] = acc[g][i];
    }
    if (lane == 0) sml[(warp * G + g) * 2] = m[g], sml[(warp * G + g) * 2 + 1] = l[g];
  }
  __syncthreads();
  if (static_cast<int>(threadIdx.x) < G) {
    const int g = threadIdx.x;
    float M = -INFINITY, L = 0.0f;
    for (int w = 0; w < kWarps; ++w) M = fmaxf(M, sml[(w * G + g) * 2]);  // finite: warp 0 had a tile
    for (int w = 0; w < kWarps; ++w) {
      const float f = expf(sml[(w * G + g) * 2] - M);  // 0 for a warp without a tile (m = -inf)
      wts[w * G + g] = f;
      L += sml[(w * G + g) * 2 + 1] * f;
    }
    wts[kWarps * G + 2 * g] = M, wts[kWarps * G + 2 * g + 1] = L;
  }
  __syncthreads();
  for (int e = threadIdx.x; e < G * D; e += blockDim.x) {
    const int g = e / D, d = e - g * D;
    float O = 0.0f;
    for (int w = 0; w < kWarps; ++w) O += so[(w * G + g) * D + d] * wts[w * G + g];
    const float M = wts[kWarps * G + 2 * g], L = wts[kWarps * G + 2 * g + 1];
    const int64_t h = static_cast<int64_t>(kh) * G + g;
    if (splits == 1) {
      a.out[(t * a.n_heads + h) * D + d] = L > 0.0f ? O / L : 0.0f;
    } else {
      const int64_t slot = (t * a.n_heads + h) * splits + split;
      a.part_o[slot * D + d] = O;
      if (d == 0) a.part_ml[slot * 2] = M, a.part_ml[slot * 2 + 1] = L;
    }
  }
}

// Block per (query, head), kMergeThreads threads: the splits' states merged into the normalised output
// (split_merge.cuh).
__global__ void __launch_bounds__(kMergeThreads) attention_merge_kernel(const float* part_o, const float* part_ml,
                                                                       float* out, int64_t D, int splits) {
  chain_enter();
  const int64_t qh = blockIdx.x;
  const float* ob =
      merge_split_states(part_o + qh * splits * D, part_ml + qh * splits * 2, static_cast<int>(D), splits);
  for (int64_t d = threadIdx.x; d < D; d += blockDim.x) out[qh * D + d] = ob[d];
}

__global__ void kv_write_kernel(KvBlocks kv, const float* k, const float* v, int64_t n, const int32_t* positions) {
  chain_enter();
  const int64_t D = kv.head_dim, row = kv.n_kv_heads * D;
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n * row) return;
  const int64_t t = i / row, h = (i % row) / D, d = i % D, p = positions[t];
  const int64_t k_off = (h * kv.block_tokens + p % kv.block_tokens) * D + d;
  uint16_t* block = kv.blocks[p / kv.block_tokens];
  block[k_off] = __half_as_ushort(__float2half(k[i]));
  block[kv.n_kv_heads * kv.block_tokens * D + k_off] = __half_as_ushort(__float2half(v[i]));
}

// The f16 cache as a source of prefill_attention.cuh: K and V rows copied as they are (exact in f16; head_dim a
// multiple of 16, so rows are 16-byte aligned) by cp.async, into the buffer the kernel is not computing on; zeros
// past j_hi and in released blocks.
struct F16PrefillSource {
  KvBlocks kv;
  static constexpr bool kLo = false, kAsync = true, kIdentityRotation = true, kColumnScales = false;
  static constexpr float kValueScale = 1.0f;
  static constexpr bool kHasArea = false;
  __host__ __device__ unsigned smem_bytes() const { return 0; }
  // 32-bit index math (positions are int32, head_dim <= 256): the 64-bit divisions it replaced were ~4 per 16-byte
  // copy, ~2,000 instructions per thread and tile; the 32-bit ones are stepped along (TileCopySteps).
  __device__ void stage(int64_t j0, int64_t j_hi, int64_t kh, const prefill::Tiles& t, int ld, unsigned char*,
                        bool /*first*/) const {
    const int B = static_cast<int>(kv.block_tokens), D = static_cast<int>(kv.head_dim), chunks = D / 8;
    const int j0i = static_cast<int>(j0), j_hii = static_cast<int>(min(j_hi, int64_t{INT32_MAX}));
    const int64_t v_side = kv.n_kv_heads * B * D;
    TileCopySteps at(static_cast<int>(threadIdx.x), static_cast<int>(blockDim.x), chunks, j0i, B);
    for (int e = threadIdx.x; e < prefill::kTile * chunks; e += blockDim.x, at.next()) {
      const int d = at.c * 8;
      __half* k_dst = t.k_hi + at.r * ld + d;
      __half* v_dst = t.v_hi + at.r * ld + d;
      const uint16_t* block = j0i + at.r <= j_hii ? kv.blocks[at.jb] : nullptr;  // null: a window's released block
      if (block) {
        const uint16_t* krow = block + static_cast<int64_t>(static_cast<int>(kh) * B + at.slot) * D;
        copy16_async(k_dst, krow + d);
        copy16_async(v_dst, krow + v_side + d);
      } else {
        *reinterpret_cast<uint4*>(k_dst) = make_uint4(0, 0, 0, 0);
        *reinterpret_cast<uint4*>(v_dst) = make_uint4(0, 0, 0, 0);
      }
    }
  }
  __device__ void rotate(float*, int, int, bool) const {}
};

// The splits' states of `splits` > 1 into the normalised output.
void merge_splits(const float* part_o, const float* part_ml, float* out, int64_t n_q, int64_t n_heads, int64_t D,
                  int splits, cudaStream_t stream) {
  if (splits <= 1) return;
  launch_chained("attention (merge splits)", attention_merge_kernel, static_cast<unsigned>(n_q * n_heads),
                 kMergeThreads, 0, stream, part_o, part_ml, out, D, splits);
}

}  // namespace

int decode_split_count(int64_t target_blocks, int64_t blocks, int64_t n_kv, int64_t min_positions, int max_splits,
                       int64_t n_q, int64_t n_heads, int64_t head_dim) {
  const int64_t want = (target_blocks + blocks - 1) / blocks;
  const int64_t useful = std::max<int64_t>(1, n_kv / min_positions);
  const int64_t scratch = static_cast<int64_t>(attention_scratch_bytes(n_q, n_heads, head_dim, max_splits) /
                                               (static_cast<uint64_t>(n_q * n_heads) * (head_dim + 2) * sizeof(float)));
  return static_cast<int>(std::max<int64_t>(
      1, std::min<int64_t>({want, useful, max_splits, int64_t{kMaxAttentionSplits}, scratch})));
}

int multiprocessor_count() {
  static const int sms = [] {
    int device = 0, n = 132;
    if (cudaGetDevice(&device) != cudaSuccess || cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device) != cudaSuccess)
      (void)cudaGetLastError(), n = 132;
    return n;
  }();
  return sms;
}

int attention_blocks_per_sm_override() {
  static const int n = [] {
    const char* env = std::getenv("LMLAB_ATTENTION_BLOCKS_PER_SM");
    return env ? std::clamp(std::atoi(env), 1, 64) : 0;
  }();
  return n;
}

int64_t tiled_decode_min_positions() {
  static const int64_t n = [] {
    const char* env = std::getenv("LMLAB_TILED_DECODE_MIN_POSITIONS");
    return env ? std::max<int64_t>(0, std::atoll(env)) : kTiledDecodeMinPositions;
  }();
  return n;
}

int64_t attention_target_blocks() {
  const int per_sm = attention_blocks_per_sm_override();
  return static_cast<int64_t>(multiprocessor_count()) * (per_sm > 0 ? per_sm : 4);
}

// The (query, split) rows of the partial states: at most min(n_q max_splits, target + n_q - 1), which bounds
// m ceil(target / m) for every m <= n_q. Monotone in n_q: a caller sizes the scratch once for its largest chunk and
// reuses it for smaller ones, and decode_split_count clamps each call to the rows of its own n_q. (The previous
// bound, n_q min(max_splits, ceil(target / n_q)), is not monotone: a 15-query call on a scratch sized for 16 could
// get more splits than the scratch held.)
uint64_t attention_scratch_bytes(int64_t n_q, int64_t n_heads, int64_t head_dim, int max_splits) {
  const int64_t rows = std::min<int64_t>(n_q * max_splits, attention_target_blocks() + n_q - 1);
  return static_cast<uint64_t>(rows * n_heads) * (head_dim + 2) * sizeof(float) + 256;
}

void kv_write(const KvBlocks& kv, const float* k, const float* v, int64_t n, const int32_t* positions,
              cudaStream_t stream) {
  const int64_t total = n * kv.n_kv_heads * kv.head_dim;
  if (total == 0) return;
  launch_chained("kv_write", kv_write_kernel, static_cast<unsigned>((total + 255) / 256), 256, 0, stream, kv, k, v, n,
                 positions);
}

void attention(const KvBlocks& kv, const float* q, float* out, int64_t n_q, int64_t n_heads, const int32_t* positions,
               int64_t n_kv_bound, float scale, float softcap, int64_t window, int max_splits, void* scratch,
               cudaStream_t stream) {
  if (n_q == 0) return;
  const int64_t D = kv.head_dim, G = n_heads / kv.n_kv_heads;
  if (G > kMaxGroup || D > 256 || G * kv.n_kv_heads != n_heads)
    throw Error(ErrorKind::unsupported, "cuda attention",
                "needs n_heads a multiple of n_kv_heads with at most 8 query heads per KV head and head_dim <= 256");
  const bool chunk = n_q >= kPrefillAttentionMinQueries;
  const int64_t n_kv = window > 0 ? std::min(window, n_kv_bound) : n_kv_bound;
  if (D % 16 == 0 && (chunk || n_kv_bound >= tiled_decode_min_positions())) {
    prefill::Params p{q, out, positions, n_q, n_heads, kv.n_kv_heads, D, window, static_cast<int>(G), 0, scale, softcap};
    if (!chunk) prefill::split_for_decode(p, F16PrefillSource{kv}, n_kv, max_splits, scratch);
    prefill::launch(p, F16PrefillSource{kv}, stream);
    merge_splits(p.part_o, p.part_ml, out, n_q, n_heads, D, p.splits, stream);
    return;
  }
  // At least a tile (32 positions) per warp of a split: shorter ones leave warps idle.
  const int splits = decode_split_count(attention_target_blocks(), n_q * kv.n_kv_heads, n_kv, kWarps * 32, max_splits,
                                       n_q, n_heads, D);
  AttnParams a{kv, q, out, nullptr, nullptr, positions, n_heads, window, static_cast<int>(G), scale, softcap};
  a.part_o = static_cast<float*>(scratch);
  a.part_ml = a.part_o + n_q * n_heads * splits * D;
  const dim3 grid(static_cast<unsigned>(kv.n_kv_heads), static_cast<unsigned>(splits), static_cast<unsigned>(n_q));
  auto launch = [&](auto dpl) {
    constexpr int DPL = decltype(dpl)::value;
    // Queries and probabilities at the kernel's GM (G rounded up to it), outputs, states and weights at G.
    auto smem = [&](int gm) {
      return static_cast<size_t>(query_floats(gm, D) + kWarps * gm * 32 + kWarps * G * (D + 3) + 2 * G) * sizeof(float);
    };
    if (G <= 1) launch_chained("attention", attention_kernel<DPL, 1>, grid, kWarps * 32, smem(1), stream, a);
    else if (G <= 2) launch_chained("attention", attention_kernel<DPL, 2>, grid, kWarps * 32, smem(2), stream, a);
    else if (G <= 4) launch_chained("attention", attention_kernel<DPL, 4>, grid, kWarps * 32, smem(4), stream, a);
    else launch_chained("attention", attention_kernel<DPL, kMaxGroup>, grid, kWarps * 32, smem(kMaxGroup), stream, a);
  };
  if (D <= 32) launch(std::integral_constant<int, 1>{});
  else if (D <= 64) launch(std::integral_constant<int, 2>{});
  else if (D <= 128) launch(std::integral_constant<int, 4>{});
  else launch(std::integral_constant<int, 8>{});
  merge_splits(a.part_o, a.part_ml, out, n_q, n_heads, D, splits, stream);
}

}  // namespace lmlab::kernels::cuda
