// Grouped expert GEMM for MoE prefill. The gathered GEMV (gemv.cu) reads an expert's matrix once per routed slot:
// a 512-token chunk of qwen3-30b-a3b (128 experts, top 8) reads every expert ~32 times per layer and the prefill
// crawled at ~1,000 tok/s. Here the slots are first grouped by expert on the device (group_slots: stable, one block,
// a warp per expert counting and placing its slots by ballot), then one launch per part runs tensor-core tiles
// (mma.sync m16n8k16 bf16, f32 accumulation) of kSlotTile slots of one expert x kRowTile weight rows: each weight
// tile is unpacked once into shared memory for all the tile's slots. X is split into its parts once per call
// (split_x_kernel) and each block copies its slots' tiles of them in by cp.async, double-buffered.
// Precision is f32's, not the dense prefill's 16 bits: X goes in as three bf16 parts (hi + mid + lo = the f32 value),
// the weights exactly: MLX affine as their integer levels q (< 256: exact in bf16) with s sum(x q) + b sum(x) per quant
// group in f32, bf16 as they are, f16 / f32 as two bf16 parts. (The 16-bit parts of the dense path moved a router's
// near tie on qwen3_moe-4bit: golden logit off by 0.62.) Each output element is one dot product in a fixed k order
// whatever the grouping, so the result does not depend on which slots share a tile.
#include <cuda_bf16.h>

#include <algorithm>
#include <string>

#include "cuda/cuda_check.h"
#include "cuda/kernels/kernels_cuda.h"
#include "cuda/kernels/shared_fragments.cuh"
#include "cuda/kernels/weight_access.cuh"

namespace lmlab::kernels::cuda {

namespace {

constexpr int kSlotTile = 32, kRowTile = 128, kKTile = 32, kGemmThreads = 128;
constexpr int kGroupThreads = 1024;
static_assert(kKTile == 32, "the X tile is loaded a lane per column");
constexpr int kPad = 8;  // bf16 elements of row padding in shared memory (bank spread; ldmatrix rows 16-byte aligned)

// A tile of work: slots order[start, start + count) (count <= kSlotTile), all routed to `expert`.
struct GroupTile {
  int32_t expert, start, count;
};

// The scratch of group_slots, 128-byte aligned parts: n_tiles, offsets [n_experts + 1], order [n_slots],
// tiles [max_tiles].
struct GroupLayout {
  uint64_t offsets, order, tiles, bytes;
  int64_t max_tiles;
};
uint64_t align128(uint64_t v) { return (v + 127) / 128 * 128; }
GroupLayout group_layout(int64_t n_slots, int64_t n_experts) {
  GroupLayout l;
  l.max_tiles = (n_slots + kSlotTile - 1) / kSlotTile + n_experts;
  l.offsets = 128;
  l.order = l.offsets + align128(static_cast<uint64_t>(n_experts + 1) * 4);
  l.tiles = l.order + align128(static_cast<uint64_t>(n_slots) * 4);
  l.bytes = l.tiles + align128(static_cast<uint64_t>(l.max_tiles) * sizeof(GroupTile));
  return l;
}

// X as split_x_kernel leaves it, after the groups in the same scratch: per (row, k tile), row-major over k tiles, its
// three bf16 parts [3][kKTile] (hi, mid, lo: 192 bytes) and, apart, its f32 sum over the tile (the affine bias term;
// zeros past the last column).
constexpr int64_t kXTileValues = 3 * kKTile;
struct XLayout {
  uint64_t parts, sums, bytes;  // offsets from the scratch's start; bytes: its end
};
XLayout x_layout(const GroupLayout& g, int64_t x_tiles) {
  XLayout x;
  x.parts = g.bytes;
  x.sums = x.parts + align128(static_cast<uint64_t>(x_tiles) * kXTileValues * 2);
  x.bytes = x.sums + align128(static_cast<uint64_t>(x_tiles) * 4);
  return x;
}
__host__ __device__ inline int64_t k_tiles_of(int64_t cols) { return (cols + kKTile - 1) / kKTile; }

// x [rows, cols] into XLayout's parts and sums: a warp per (row, k tile), a lane per column. The sum goes over the
// lanes by the same butterfly for every tile, so a slot's result does not depend on its tile's other slots.
__global__ void split_x_kernel(const float* __restrict__ x, int64_t rows, int64_t cols, int64_t k_tiles,
                               __nv_bfloat16* __restrict__ parts, float* __restrict__ sums) {
  const int lane = threadIdx.x % 32, warps_per_block = blockDim.x / 32;
  const int64_t n = rows * k_tiles, stride = static_cast<int64_t>(gridDim.x) * warps_per_block;
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * warps_per_block + threadIdx.x / 32; t < n; t += stride) {
    const int64_t row = t / k_tiles, c = (t % k_tiles) * kKTile + lane;
    const float v = c < cols ? x[row * cols + c] : 0.0f;
    const __nv_bfloat16 hi = __float2bfloat16(v);
    const float r1 = v - __bfloat162float(hi);
    const __nv_bfloat16 mid = __float2bfloat16(r1);
    __nv_bfloat16* p = parts + t * kXTileValues;
    p[lane] = hi, p[kKTile + lane] = mid, p[2 * kKTile + lane] = __float2bfloat16(r1 - __bfloat162float(mid));
    float sum = v;
    for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    if (lane == 0) sums[t] = sum;
  }
}

// One block, kGroupThreads threads. Counts per expert by shared-memory atomics; each thread then owns a run of
// experts, and a block-wide scan of the runs' slot and tile counts gives every expert its offset and first tile;
// the slots are placed by atomics on each expert's cursor. Their order inside a group is not fixed, which nothing
// depends on: a slot's dot products do not depend on which slots share its tile (GroupedExpertMatmulMatchesReference
// checks the bits). A warp per expert scanning every slot with ballots (stable, 2 x 128 passes over 4,096 slots for
// a 512-token chunk of qwen3-30b-a3b) took 5% of the MoE prefill's kernel time (H100, twenty-first session). Ids
// outside [0, n_experts) belong to no group (their outputs are not written).
__global__ void __launch_bounds__(kGroupThreads) group_slots_kernel(const int32_t* __restrict__ experts,
                                                                     int64_t n_slots, int n_experts,
                                                                     uint8_t* scratch, GroupLayout l) {
  static_assert(kGroupThreads == 32 * 32, "the scan's second level is one warp over the 32 warps");
  extern __shared__ int32_t counts[];  // [n_experts]: the counts, then each expert's next place in `order`
  __shared__ int32_t warp_slots[32], warp_tiles[32];
  auto* n_tiles = reinterpret_cast<int32_t*>(scratch);
  auto* offsets = reinterpret_cast<int32_t*>(scratch + l.offsets);
  auto* order = reinterpret_cast<int32_t*>(scratch + l.order);
  auto* tiles = reinterpret_cast<GroupTile*>(scratch + l.tiles);
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  for (int e = tid; e < n_experts; e += kGroupThreads) counts[e] = 0;
  __syncthreads();
  for (int64_t i = tid; i < n_slots; i += kGroupThreads)
    if (const int32_t e = experts[i]; e >= 0 && e < n_experts) atomicAdd(&counts[e], 1);
  __syncthreads();
  // Thread tid's experts [e0, e1): their slots and tiles, scanned over the warp, then over the warps.
  const int per = (n_experts + kGroupThreads - 1) / kGroupThreads;
  const int e0 = min(n_experts, tid * per), e1 = min(n_experts, e0 + per);
  int my_slots = 0, my_tiles = 0;
  for (int e = e0; e < e1; ++e) my_slots += counts[e], my_tiles += (counts[e] + kSlotTile - 1) / kSlotTile;
  int slots_in = my_slots, tiles_in = my_tiles;  // inclusive over the warp's lanes
  for (int o = 1; o < 32; o <<= 1) {
    const int s = __shfl_up_sync(0xffffffffu, slots_in, o), t = __shfl_up_sync(0xffffffffu, tiles_in, o);
    if (lane >= o) slots_in += s, tiles_in += t;
  }
  if (lane == 31) warp_slots[warp] = slots_in, warp_tiles[warp] = tiles_in;
  __syncthreads();
  if (warp == 0) {  // the warps' totals into exclusive offsets
    const int s0 = warp_slots[lane], t0 = warp_tiles[lane];
    int s = s0, t = t0;
    for (int o = 1; o < 32; o <<= 1) {
      const int su = __shfl_up_sync(0xffffffffu, s, o), tu = __shfl_up_sync(0xffffffffu, t, o);
      if (lane >= o) s += su, t += tu;
    }
    warp_slots[lane] = s - s0, warp_tiles[lane] = t - t0;
  }
  __syncthreads();
  int at = warp_slots[warp] + slots_in - my_slots, tile = warp_tiles[warp] + tiles_in - my_tiles;
  for (int e = e0; e < e1; ++e) {
    const int32_t c = counts[e];
    offsets[e] = at;
    for (int32_t s = 0; s < c; s += kSlotTile) tiles[tile++] = {e, at + s, min(kSlotTile, c - s)};
    counts[e] = at;
    at += c;
  }
  if (tid == kGroupThreads - 1) offsets[n_experts] = at, *n_tiles = tile;  // the last thread's ends are the totals
  __syncthreads();
  for (int64_t i = tid; i < n_slots; i += kGroupThreads)
    if (const int32_t e = experts[i]; e >= 0 && e < n_experts) order[atomicAdd(&counts[e], 1)] = static_cast<int32_t>(i);
}

// The weight tile's form: MLX affine as its integer levels q (exact in bf16 up to 8 bits) with the group's scale and
// bias applied once per quant group, s (sum x q) + b (sum x), as f32; bf16 weights as they are (exact); f16 / f32 weights as
// bf16 hi + lo parts.
enum class Form { affine, bf16, split };

struct __align__(16) GemmShared {
  __nv_bfloat16 x[2][3][kSlotTile][kKTile + kPad];  // two buffers of X as bf16 hi + mid + lo: exact for f32 values
  __nv_bfloat16 w[2][kRowTile][kKTile + kPad];      // q (affine), w (bf16), or w hi + lo (split)
  float x_sum[2][kSlotTile];                        // per buffer and slot, the sum of its k tile's x (affine's bias)
  float scale[kRowTile], bias[kRowTile];            // affine: per weight row, the k tile's group scale and bias
  int32_t slot[kSlotTile], x_row[kSlotTile];        // the tile's slots (-1: none) and their rows of X
};

// X tile kt of the block's slots (split_x_kernel's parts and sums) into buffer b by cp.async; no slot: zeros.
__device__ __forceinline__ void issue_x_tile(GemmShared& sm, int b, const __nv_bfloat16* __restrict__ parts,
                                             const float* __restrict__ sums, int64_t k_tiles, int64_t kt) {
  constexpr int kPartPieces = kKTile * 2 / 16, kSlotPieces = 3 * kPartPieces;  // 16-byte pieces
  static_assert(kSlotTile * kSlotPieces % kGemmThreads == 0, "whole rounds of copies");
#pragma unroll
  for (int c = threadIdx.x; c < kSlotTile * kSlotPieces; c += kGemmThreads) {
    const int s = c / kSlotPieces, p = c % kSlotPieces / kPartPieces, q = c % kPartPieces;
    const int32_t row = sm.x_row[s];
    __nv_bfloat16* dst = &sm.x[b][p][s][q * 8];
    if (row >= 0) copy16_async(dst, parts + (row * k_tiles + kt) * kXTileValues + p * kKTile + q * 8);
    else *reinterpret_cast<uint4*>(dst) = make_uint4(0u, 0u, 0u, 0u);
  }
  if (threadIdx.x < kSlotTile) {
    const int32_t row = sm.x_row[threadIdx.x];
    if (row >= 0) copy4_async(&sm.x_sum[b][threadIdx.x], sums + row * k_tiles + kt);
    else sm.x_sum[b][threadIdx.x] = 0.0f;
  }
  async_commit();
}

// Fragments of mma.m16n8k16 (PTX ISA: lane = 4 g + t) by ldmatrix. A: the 16 x 16 bf16 tile at p (row-major, leading
// dimension ld elements). B: two 16 x 8 tiles, element (k, n) of tile j at p[(8 j + n) ld + k] (weight rows).
__device__ __forceinline__ void load_a(uint32_t (&a)[4], const __nv_bfloat16* p, int ld, int lane) {
  ldmatrix_x4(a, p + (lane % 16) * ld + (lane / 16) * 8);
}
__device__ __forceinline__ void load_b2(uint32_t (&b0)[2], uint32_t (&b1)[2], const __nv_bfloat16* p, int ld, int lane) {
  uint32_t r[4];
  ldmatrix_x4(r, p + ((lane / 16) * 8 + lane % 8) * ld + ((lane / 8) % 2) * 8);
  b0[0] = r[0], b0[1] = r[1], b1[0] = r[2], b1[1] = r[3];
}
// c (16 x 8 f32: c[0..1] row g, columns 2t, 2t + 1; c[2..3] row g + 8) += a b.
__device__ __forceinline__ void mma(float (&c)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// Calls f(m, n, i, row, col) for each accumulator element of a lane: element i of tile (m, n) is the block's slot row
// `row` and weight row `col` (the m16n8 C layout above; warp w owns weight rows [32 w, 32 w + 32)).
template <class F>
__device__ __forceinline__ void for_each_acc(int warp, int g, int t, F&& f) {
#pragma unroll
  for (int m = 0; m < 2; ++m)
#pragma unroll
    for (int n = 0; n < 4; ++n)
#pragma unroll
      for (int i = 0; i < 4; ++i) f(m, n, i, m * 16 + g + (i >= 2 ? 8 : 0), warp * 32 + n * 8 + 2 * t + (i & 1));
}

// Level q of (r, c) of an affine weight (load_affine without the scale and bias).
__device__ __forceinline__ uint32_t affine_level(const AffineWeight& w, int64_t r, int64_t c) {
  const uint32_t* row = w.packed + r * (w.cols * w.bits / 32);
  const int64_t bit = c * w.bits, word = bit >> 5;
  const int off = static_cast<int>(bit & 31);
  uint32_t q = row[word] >> off;
  if (off + w.bits > 32) q |= row[word + 1] << (32 - off);
  return q & ((1u << w.bits) - 1u);
}

// Rows [r0, r0 + kRowTile) x columns [k0, k0 + kKTile) of an expert weight straight into shared memory, a value at a
// time: affine levels of widths other than 4 and 8, dense weights as bf16 (exact) or bf16 hi + lo (f16, f32).
template <Form kForm>
__device__ __forceinline__ void store_weight_values(const DeviceWeight& w, int64_t r0, int64_t k0, GemmShared& sm) {
  for (int i = threadIdx.x; i < kRowTile * kKTile; i += kGemmThreads) {
    const int rr = i / kKTile, kk = i % kKTile;
    const int64_t r = r0 + rr, c = k0 + kk;
    if constexpr (kForm == Form::affine) {
      sm.w[0][rr][kk] = __float2bfloat16(r < w.rows ? static_cast<float>(affine_level(w.quant, r, c)) : 0.0f);
    } else {
      const float v = r < w.rows && c < w.cols ? load_dense(w.dense, r * w.cols + c, w.type) : 0.0f;
      const __nv_bfloat16 hi = __float2bfloat16(v);
      sm.w[0][rr][kk] = hi;
      if constexpr (kForm == Form::split) sm.w[1][rr][kk] = __float2bfloat16(v - __bfloat162float(hi));
    }
  }
}

// Affine weight row r0 + threadIdx.x's group scale and bias at column k0 (0 past the last row).
__device__ __forceinline__ void load_row_scale_bias(const DeviceWeight& w, int64_t r0, int64_t k0, float& scale,
                                                    float& bias) {
  const AffineWeight& a = w.quant;
  const int64_t groups = w.cols / a.group_size, g0 = k0 / a.group_size, r = r0 + threadIdx.x;
  scale = r < w.rows ? load_scale(a.scales, r * groups + g0, a.scale_type) : 0.0f;
  bias = r < w.rows ? load_scale(a.biases, r * groups + g0, a.scale_type) : 0.0f;
}

// A packed word's levels (level q at bits [q bits, (q + 1) bits), the smaller column first) as bf16 values at dst, one
// shared-memory store. The same values __float2bfloat16(q) gives, bit for bit, with fewer instructions: 4-bit levels
// two at a time (byte p's low nibble into the low half, its high nibble, from the word shifted by 4, into the high
// half, over bf16 128 = 0x4300: the halves are 128 + lo and 128 + hi, exactly, and one bf16x2 subtraction of 128
// leaves lo and hi); 8-bit ones by pairs of conversions.
template <int kBits>
__device__ __forceinline__ void store_levels(uint32_t word, __nv_bfloat16* dst) {
  static_assert(kBits == 4 || kBits == 8, "packed levels of 4 or 8 bits");
  if constexpr (kBits == 4) {
    constexpr uint32_t k128 = 0x43004300u;  // bf16 pair (128, 128)
    const uint32_t shifted = word >> 4;
    uint32_t pairs[4];
#pragma unroll
    for (int p = 0; p < 4; ++p) {
      // bytes: word's byte p, any, shifted's byte p (4 + p), any; then each half's low nibble
      const uint32_t v = (__byte_perm(word, shifted, p | ((4 + p) << 8)) & 0x000F000Fu) | k128;
      const __nv_bfloat162 q = __hsub2(*reinterpret_cast<const __nv_bfloat162*>(&v),
                                       *reinterpret_cast<const __nv_bfloat162*>(&k128));
      pairs[p] = *reinterpret_cast<const uint32_t*>(&q);
    }
    *reinterpret_cast<uint4*>(dst) = make_uint4(pairs[0], pairs[1], pairs[2], pairs[3]);
  } else {
    uint32_t pairs[2];
#pragma unroll
    for (int p = 0; p < 2; ++p) {
      const __nv_bfloat162 q = __floats2bfloat162_rn(static_cast<float>((word >> (16 * p)) & 0xFFu),
                                                     static_cast<float>((word >> (16 * p + 8)) & 0xFFu));
      pairs[p] = *reinterpret_cast<const uint32_t*>(&q);
    }
    *reinterpret_cast<uint2*>(dst) = make_uint2(pairs[0], pairs[1]);
  }
}

// One k tile of a block's weights in registers, for 4- and 8-bit affine weights (kBits): the packed words (a thread
// per word) and the rows' group scales and biases. Loaded from global memory while the tile before is multiplied
// (the loads of a tile were waited for before its MMAs: a memory round trip per 32 columns), then stored to shared
// memory in the MMA's form. kBits 0 (other widths, dense): the weights go by store_weight_values when stored (32
// values a thread in registers did not fit beside the accumulators).
template <Form kForm, int kBits>
struct TileStage {
  static constexpr int kRowWords = kKTile * kBits / 32;  // packed words of a weight row's k tile
  static constexpr int kWords = kBits ? kRowTile * kRowWords / kGemmThreads : 1;
  static_assert(kRowTile == kGemmThreads, "affine scales and biases: a thread per weight row");
  uint32_t words[kWords];
  float scale = 0.0f, bias = 0.0f;  // affine: weight row threadIdx.x's group scale and bias

  __device__ __forceinline__ void load(const DeviceWeight& w, int64_t r0, int64_t k0) {
    if constexpr (kForm == Form::affine && kBits != 0) {
      const AffineWeight& a = w.quant;
      load_row_scale_bias(w, r0, k0, scale, bias);
      const int64_t row_words = w.cols * kBits / 32;
#pragma unroll
      for (int j = 0; j < kWords; ++j) {
        const int i = threadIdx.x + j * kGemmThreads, rr = i / kRowWords, wi = i % kRowWords;
        const int64_t rw = r0 + rr;
        words[j] = rw < w.rows ? a.packed[rw * row_words + k0 * kBits / 32 + wi] : 0u;
      }
    }
  }

  // Packed words as their levels (affine of other widths: the scales and biases too, the levels by
  // store_weight_values; dense: store_weight_values).
  __device__ __forceinline__ void store(const DeviceWeight& w, int64_t r0, int64_t k0, GemmShared& sm) const {
    if constexpr (kForm == Form::affine && kBits != 0) {
      sm.scale[threadIdx.x] = scale, sm.bias[threadIdx.x] = bias;
      constexpr int per_word = 32 / kBits;
#pragma unroll
      for (int j = 0; j < kWords; ++j) {
        const int i = threadIdx.x + j * kGemmThreads, rr = i / kRowWords, wi = i % kRowWords;
        store_levels<kBits>(words[j], &sm.w[0][rr][wi * per_word]);
      }
    } else {
      if constexpr (kForm == Form::affine) load_row_scale_bias(w, r0, k0, sm.scale[threadIdx.x], sm.bias[threadIdx.x]);
      store_weight_values<kForm>(w, r0, k0, sm);
    }
  }
};

// One block: the slots of tile blockIdx.y x weight rows [blockIdx.x kRowTile, +kRowTile). Warp w owns rows
// [32 w, 32 w + 32) for all 32 slots: 2 x 4 tiles of m16n8. The next k tile's X is copied in (cp.async, the other
// buffer) and, for packed 4- and 8-bit weights, its words loaded into registers (TileStage) while this one is
// multiplied.
template <Form kForm, int kBits>
__global__ void __launch_bounds__(kGemmThreads, kBits == 8 ? 3 : 4)
    grouped_gemm_kernel(DeviceWeight w, const uint8_t* scratch, GroupLayout l, XLayout xl, int64_t x_div,
                        float* __restrict__ y) {
  const auto* n_tiles = reinterpret_cast<const int32_t*>(scratch);
  if (static_cast<int32_t>(blockIdx.y) >= *n_tiles) return;
  const GroupTile tile = reinterpret_cast<const GroupTile*>(scratch + l.tiles)[blockIdx.y];
  const auto* order = reinterpret_cast<const int32_t*>(scratch + l.order);
  const auto* parts = reinterpret_cast<const __nv_bfloat16*>(scratch + xl.parts);
  const auto* sums = reinterpret_cast<const float*>(scratch + xl.sums);
  __shared__ GemmShared sm;
  const DeviceWeight we = select_expert(w, tile.expert);
  const int64_t r0 = static_cast<int64_t>(blockIdx.x) * kRowTile, cols = w.cols, k_tiles = k_tiles_of(cols);
  if (threadIdx.x < kSlotTile) {
    const int32_t slot = threadIdx.x < tile.count ? order[tile.start + threadIdx.x] : -1;
    sm.slot[threadIdx.x] = slot, sm.x_row[threadIdx.x] = slot >= 0 ? static_cast<int32_t>(slot / x_div) : -1;
  }
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  constexpr int ld = kKTile + kPad;
  float acc[2][4][4] = {};
  // Affine: sum x q over the k tiles of one quant group (the tile's rows share its scale and bias) and its slot rows'
  // sum x (rows m 16 + g + 8 h), scaled into acc once per group.
  float part[2][4][4] = {}, x_sum[2][2] = {};
  const int64_t group_tiles = kForm == Form::affine ? w.quant.group_size / kKTile : 1;
  __syncthreads();
  if (k_tiles > 0) issue_x_tile(sm, 0, parts, sums, k_tiles, 0);
  // Packed 4/8-bit weights: the next tile in flight during the MMAs. The per-value forms load the tile they store.
  constexpr bool kAhead = kBits != 0;
  TileStage<kForm, kBits> stage;
  if constexpr (kAhead) stage.load(we, r0, 0);
  for (int64_t kt = 0; kt < k_tiles; ++kt) {
    const int64_t k0 = kt * kKTile;
    const int b = static_cast<int>(kt & 1);
    if constexpr (!kAhead) stage.load(we, r0, k0);
    stage.store(we, r0, k0, sm);
    if (kt + 1 < k_tiles) {
      issue_x_tile(sm, b ^ 1, parts, sums, k_tiles, kt + 1);  // buffer b ^ 1 was last read before the loop's barrier
      async_wait<1>();
    } else {
      async_wait<0>();
    }
    __syncthreads();
    if (kAhead && kt + 1 < k_tiles) stage.load(we, r0, k0 + kKTile);
#pragma unroll
    for (int kk = 0; kk < kKTile; kk += 16) {
      uint32_t a[3][2][4], bw[4][2], bw_lo[4][2];
#pragma unroll
      for (int p = 0; p < 3; ++p)
#pragma unroll
        for (int m = 0; m < 2; ++m) load_a(a[p][m], &sm.x[b][p][m * 16][kk], ld, lane);
#pragma unroll
      for (int n = 0; n < 4; n += 2) {
        load_b2(bw[n], bw[n + 1], &sm.w[0][warp * 32 + n * 8][kk], ld, lane);
        if constexpr (kForm == Form::split) load_b2(bw_lo[n], bw_lo[n + 1], &sm.w[1][warp * 32 + n * 8][kk], ld, lane);
      }
#pragma unroll
      for (int m = 0; m < 2; ++m)
#pragma unroll
        for (int n = 0; n < 4; ++n) {
          float(&c)[4] = kForm == Form::affine ? part[m][n] : acc[m][n];
          mma(c, a[0][m], bw[n]), mma(c, a[1][m], bw[n]), mma(c, a[2][m], bw[n]);
          if constexpr (kForm == Form::split) mma(c, a[0][m], bw_lo[n]), mma(c, a[1][m], bw_lo[n]);
        }
    }
    if constexpr (kForm == Form::affine) {
#pragma unroll
      for (int m = 0; m < 2; ++m)
#pragma unroll
        for (int h = 0; h < 2; ++h) x_sum[m][h] += sm.x_sum[b][m * 16 + g + 8 * h];
      if ((kt + 1) % group_tiles == 0 || kt + 1 == k_tiles) {
        for_each_acc(warp, g, t, [&](int m, int n, int i, int row, int col) {
          acc[m][n][i] += sm.scale[col] * part[m][n][i] + sm.bias[col] * x_sum[m][i / 2];
          part[m][n][i] = 0.0f;
        });
        x_sum[0][0] = x_sum[0][1] = x_sum[1][0] = x_sum[1][1] = 0.0f;
      }
    }
    __syncthreads();
  }
  for_each_acc(warp, g, t, [&](int m, int n, int i, int row, int col) {
    const int64_t r = r0 + col;
    const int32_t slot = sm.slot[row];
    if (slot >= 0 && r < w.rows) y[slot * w.rows + r] = acc[m][n][i] + (we.bias ? we.bias[r] : 0.0f);
  });
}

}  // namespace

bool matmul_grouped_supports(const DeviceWeight& w) {
  return !w.affine || (w.quant.group_size % kKTile == 0 && w.cols % w.quant.group_size == 0);
}

int64_t grouped_x_values(int64_t rows, int64_t cols) { return rows * k_tiles_of(cols) * kKTile; }

uint64_t expert_groups_bytes(int64_t n_slots, int64_t n_experts, int64_t x_values) {
  return x_layout(group_layout(n_slots, n_experts), (x_values + kKTile - 1) / kKTile).bytes;
}

void group_slots(const int32_t* experts, int64_t n_slots, int64_t n_experts, void* groups, cudaStream_t stream) {
  if (n_experts <= 0 || n_experts > kMaxGroupedExperts)
    throw Error(ErrorKind::internal, "group_slots",
                "expert count " + std::to_string(n_experts) + " outside [1, " + std::to_string(kMaxGroupedExperts) + "]");
  const GroupLayout l = group_layout(n_slots, n_experts);
  group_slots_kernel<<<1, kGroupThreads, static_cast<size_t>(n_experts) * 4, stream>>>(
      experts, n_slots, static_cast<int>(n_experts), static_cast<uint8_t*>(groups), l);
  lmlab::cuda::check_launch("group slots by expert");
}

void matmul_grouped(const GemvPart* parts, int n_parts, void* groups, uint64_t groups_bytes, int64_t n_slots,
                    int64_t n_experts, const float* x, int64_t x_div, cudaStream_t stream) {
  const GroupLayout l = group_layout(n_slots, n_experts);
  if (l.max_tiles > 65535)  // the grid's y dimension
    throw Error(ErrorKind::invalid_input, "matmul_grouped",
                std::to_string(n_slots) + " expert slots in one chunk: too many (lower --prefill-size)");
  if (n_parts == 0 || n_slots == 0) return;
  const int64_t cols = parts[0].w.cols, rows = (n_slots + x_div - 1) / x_div, k_tiles = k_tiles_of(cols);
  for (int p = 1; p < n_parts; ++p)
    if (parts[p].w.cols != cols)
      throw Error(ErrorKind::internal, "matmul_grouped", "parts of one x differ in their columns");
  const XLayout xl = x_layout(l, rows * k_tiles);
  if (xl.bytes > groups_bytes)
    throw Error(ErrorKind::internal, "matmul_grouped",
                "x of " + std::to_string(rows) + " x " + std::to_string(cols) + " does not fit the groups' scratch (" +
                    std::to_string(groups_bytes) + " bytes; expert_groups_bytes' x_values too small)");
  auto* scratch = static_cast<uint8_t*>(groups);
  if (rows * k_tiles > 0) {  // (no columns: the outputs are the biases)
    constexpr int kSplitThreads = 256, kWarps = kSplitThreads / 32;
    const int64_t blocks = std::min<int64_t>((rows * k_tiles + kWarps - 1) / kWarps, 8192);
    split_x_kernel<<<static_cast<unsigned>(blocks), kSplitThreads, 0, stream>>>(
        x, rows, cols, k_tiles, reinterpret_cast<__nv_bfloat16*>(scratch + xl.parts),
        reinterpret_cast<float*>(scratch + xl.sums));
    lmlab::cuda::check_launch("split x for the grouped matmul");
  }
  for (int p = 0; p < n_parts; ++p) {
    const DeviceWeight& w = parts[p].w;
    if (w.rows == 0) continue;
    const dim3 grid(static_cast<unsigned>((w.rows + kRowTile - 1) / kRowTile), static_cast<unsigned>(l.max_tiles));
    const uint8_t* g = scratch;
    if (!matmul_grouped_supports(w))
      throw Error(ErrorKind::internal, "matmul_grouped", "affine group size " + std::to_string(w.quant.group_size) +
                                                             " is not a multiple of " + std::to_string(kKTile));
    if (w.affine && w.quant.bits == 4)
      grouped_gemm_kernel<Form::affine, 4><<<grid, kGemmThreads, 0, stream>>>(w, g, l, xl, x_div, parts[p].y);
    else if (w.affine && w.quant.bits == 8)
      grouped_gemm_kernel<Form::affine, 8><<<grid, kGemmThreads, 0, stream>>>(w, g, l, xl, x_div, parts[p].y);
    else if (w.affine)
      grouped_gemm_kernel<Form::affine, 0><<<grid, kGemmThreads, 0, stream>>>(w, g, l, xl, x_div, parts[p].y);
    else if (w.type == WeightType::bf16)
      grouped_gemm_kernel<Form::bf16, 0><<<grid, kGemmThreads, 0, stream>>>(w, g, l, xl, x_div, parts[p].y);
    else grouped_gemm_kernel<Form::split, 0><<<grid, kGemmThreads, 0, stream>>>(w, g, l, xl, x_div, parts[p].y);
    lmlab::cuda::check_launch("grouped expert matmul");
  }
}

}  // namespace lmlab::kernels::cuda
