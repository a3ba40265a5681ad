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
constexpr int kVBatch = 8;    // V rows loaded together
constexpr int kKeyChunks = 8;  // 16-byte pieces of a key row loaded together

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

// K (v = false) or V row of position j, KV head kh. 32-bit division (positions and block sizes fit): the 64-bit
// one is a ~70-instruction call, and the decode kernel's lanes paid one per key and value row.
__device__ __forceinline__ const uint16_t* kv_row(const KvBlocks& kv, int64_t j, int64_t kh, bool v) {
  const uint32_t B = static_cast<uint32_t>(kv.block_tokens), jj = static_cast<uint32_t>(j), b = jj / B;
  return kv.blocks[b] + ((v ? kv.n_kv_heads * B : 0) + kh * B + (jj - b * B)) * kv.head_dim;
}

__device__ __forceinline__ float h2f(uint16_t v) { return __half2float(__ushort_as_half(v)); }

// A lane's DPL elements of V row vr (0 when !ok): adjacent ones with one load when dense, else strided by 32.
template <int DPL>
__device__ __forceinline__ void v_row_share(const uint16_t* vr, bool ok, bool dense, int lane, int D,
                                            float (&out)[DPL]) {
  if (dense && DPL >= 2) {
    uint32_t w[DPL / 2 > 0 ? DPL / 2 : 1];
    if (!ok) {
#pragma unroll
      for (int i = 0; i < DPL / 2; ++i) w[i] = 0u;
    } else if constexpr (DPL == 8) {
      const uint4 x = *reinterpret_cast<const uint4*>(vr + 8 * lane);
      w[0] = x.x, w[1] = x.y, w[2] = x.z, w[3] = x.w;
    } else if constexpr (DPL == 4) {
      const uint2 x = *reinterpret_cast<const uint2*>(vr + 4 * lane);
      w[0] = x.x, w[1] = x.y;
    } else if constexpr (DPL == 2) {
      w[0] = *reinterpret_cast<const uint32_t*>(vr + 2 * lane);
    }
#pragma unroll
    for (int i = 0; i < DPL / 2; ++i) {
      const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&w[i]));
      out[2 * i] = f.x, out[2 * i + 1] = f.y;
    }
    return;
  }
#pragma unroll
  for (int i = 0; i < DPL; ++i) {
    const int d = lane + 32 * i;
    out[i] = ok && d < D ? h2f(vr[d]) : 0.0f;
  }
}

// DPL: head-dim elements per lane in the V sum (head_dim <= 32 * DPL); element i of a lane is d = DPL lane + i when
// head_dim == 32 DPL (one 2-8 byte load per V row and lane), else d = lane + 32 i. GM: the most
// query heads per KV head it serves (registers: G x DPL accumulators, G scores; 158 registers with 8 for every G
// limited the 8B's G = 4 to three blocks per SM).
// A warp takes tiles of 32 positions, a lane per position for the scores: the lane reads its key row with 16-byte
// loads and dots it with the G query heads (scaled, in shared memory), so the softmax reduces once per tile and
// head rather than once per position; then the V rows of the tile, lanes over head_dim, each position's weight
// shuffled from its lane. (A lane per head-dim element, a warp sum per position and head, left the kernel at
// ~0.36 TB/s at 16K positions: latency-bound on the reductions.)
template <int DPL, int GM>
__global__ void __launch_bounds__(kWarps * 32, GM <= 4 && DPL <= 4 ? 4 : 1) attention_kernel(AttnParams a) {
  chain_enter();
  // [group][head_dim] scaled queries, then [kWarps][group][head_dim] outputs and [kWarps][group][2] (m, l)
  extern __shared__ float smem[];
  const int64_t kh = blockIdx.x, split = blockIdx.y, t = blockIdx.z;
  const int splits = gridDim.y, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t D = a.kv.head_dim, G = a.group;
  const int64_t pos = a.positions[t];
  const int64_t hi = pos;
  const int64_t lo = a.window > 0 ? max(int64_t{0}, pos - a.window + 1) : 0;
  const int64_t len = max(int64_t{0}, hi - lo + 1), per = (len + splits - 1) / splits;
  const int64_t j0 = lo + split * per, j1 = min(lo + len, j0 + per);

  float* qs = smem;  // the block's G heads are consecutive rows of q: one contiguous [G][D] run
  const float* qb = a.q + (t * a.n_heads + kh * G) * D;
  for (int e = threadIdx.x; e < static_cast<int>(G * D); e += blockDim.x) qs[e] = qb[e] * a.scale;
  __syncthreads();
  const bool vec = D % 8 == 0;  // 16-byte key loads (rows start 16-byte aligned then)
  const bool dense_v = D == 32 * DPL;  // a lane's V elements are adjacent (rows 2 DPL-byte aligned then)

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
    float s[GM];
#pragma unroll
    for (int g = 0; g < GM; ++g) s[g] = 0.0f;
    if (valid) {
      const uint16_t* kr = kv_row(a.kv, j, kh, false);
      if (vec) {
        // kKeyChunks 16-byte loads in flight before the first is used: one at a time, a 128-wide key row cost
        // 16 memory round trips per tile.
        for (int64_t d0 = 0; d0 < D; d0 += 8 * kKeyChunks) {
          uint4 raw[kKeyChunks];
#pragma unroll
          for (int c = 0; c < kKeyChunks; ++c)
            if (d0 + 8 * c < D) raw[c] = *reinterpret_cast<const uint4*>(kr + d0 + 8 * c);
#pragma unroll
          for (int c = 0; c < kKeyChunks; ++c) {
            if (d0 + 8 * c >= D) break;
            const uint32_t u[4] = {raw[c].x, raw[c].y, raw[c].z, raw[c].w};
            float kf[8];
#pragma unroll
            for (int i = 0; i < 4; ++i) {
              const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&u[i]));
              kf[2 * i] = f.x, kf[2 * i + 1] = f.y;
            }
            const int64_t d = d0 + 8 * c;
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
      } else {
        for (int64_t d = 0; d < D; ++d) {
          const float kf = h2f(kr[d]);
#pragma unroll
          for (int g = 0; g < GM; ++g) {
            if (g >= G) break;
            s[g] += qs[g * D + d] * kf;
          }
        }
      }
    }
    float p[GM];
#pragma unroll
    for (int g = 0; g < GM; ++g) {
      if (g >= G) break;
      float sg = s[g];
      if (a.softcap > 0.0f) sg = a.softcap * tanhf(sg / a.softcap);
      if (!valid) sg = -INFINITY;
      const float m_new = fmaxf(m[g], warp_max(sg));  // finite: the tile's lane 0 is always valid
      p[g] = valid ? expf(sg - m_new) : 0.0f;
      const float corr = expf(m[g] - m_new);
      l[g] = l[g] * corr + warp_sum(p[g]);
#pragma unroll
      for (int i = 0; i < DPL; ++i) acc[g][i] *= corr;
      m[g] = m_new;
    }
    // V rows kVBatch at a time: their loads in flight together (one at a time, a short split's 15 positions cost
    // 15 memory round trips).
    const int n_valid = static_cast<int>(min(int64_t{32}, j1 - base));
    // Each lane's own position's V row, handed to the other lanes by shuffles (no index math per row).
    const uint16_t* v_own = valid ? kv_row(a.kv, j, kh, true) : nullptr;
    for (int p0 = 0; p0 < n_valid; p0 += kVBatch) {
      float vf[kVBatch][DPL];
#pragma unroll
      for (int b = 0; b < kVBatch; ++b) {
        const bool ok = p0 + b < n_valid;
        const uint16_t* vr = reinterpret_cast<const uint16_t*>(
            __shfl_sync(0xffffffffu, reinterpret_cast<uintptr_t>(v_own), (p0 + b) & 31));
        v_row_share<DPL>(vr, ok, dense_v, lane, static_cast<int>(D), vf[b]);
      }
#pragma unroll
      for (int b = 0; b < kVBatch; ++b) {
#pragma unroll
        for (int g = 0; g < GM; ++g) {
          if (g >= G) break;
          const float pg = __shfl_sync(0xffffffffu, p[g], (p0 + b) & 31);  // 0 past the tile's valid lanes
#pragma unroll
          for (int i = 0; i < DPL; ++i) acc[g][i] += pg * vf[b][i];
        }
      }
    }
  }

  // Merge the warps' states.
  float* so = smem + G * D;
  float* sml = so + kWarps * G * D;
#pragma unroll
  for (int g = 0; g < GM; ++g) {
    if (g >= G) break;
#pragma unroll
    for (int i = 0; i < DPL; ++i) {
      const int64_t d = dense_v ? DPL * lane + i : lane + 32 * i;
      if (d < D) so[(warp * G + g) * D + d] = acc[g][i];
    }
    if (lane == 0) sml[(warp * G + g) * 2] = m[g], sml[(warp * G + g) * 2 + 1] = l[g];
  }
  __syncthreads();
  for (int e = threadIdx.x; e < static_cast<int>(G * D); e += blockDim.x) {
    const int g = e / static_cast<int>(D), d = e - g * static_cast<int>(D);
    float M = -INFINITY;
    for (int w = 0; w < kWarps; ++w) M = fmaxf(M, sml[(w * G + g) * 2]);
    float L = 0.0f, O = 0.0f;
    if (M != -INFINITY)
      for (int w = 0; w < kWarps; ++w) {
        const float f = expf(sml[(w * G + g) * 2] - M);
        L += sml[(w * G + g) * 2 + 1] * f;
        O += so[(w * G + g) * D + d] * f;
      }
    const int64_t h = kh * G + g;
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
  const size_t smem = static_cast<size_t>(G * D + kWarps * G * (D + 2)) * sizeof(float);
  auto launch = [&](auto dpl) {
    constexpr int DPL = decltype(dpl)::value;
    if (G <= 1) launch_chained("attention", attention_kernel<DPL, 1>, grid, kWarps * 32, smem, stream, a);
    else if (G <= 2) launch_chained("attention", attention_kernel<DPL, 2>, grid, kWarps * 32, smem, stream, a);
    else if (G <= 4) launch_chained("attention", attention_kernel<DPL, 4>, grid, kWarps * 32, smem, stream, a);
    else launch_chained("attention", attention_kernel<DPL, kMaxGroup>, grid, kWarps * 32, smem, stream, a);
  };
  if (D <= 32) launch(std::integral_constant<int, 1>{});
  else if (D <= 64) launch(std::integral_constant<int, 2>{});
  else if (D <= 128) launch(std::integral_constant<int, 4>{});
  else launch(std::integral_constant<int, 8>{});
  merge_splits(a.part_o, a.part_ml, out, n_q, n_heads, D, splits, stream);
}

}  // namespace lmlab::kernels::cuda
