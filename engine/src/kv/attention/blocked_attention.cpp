// Blocked attention over a KV cache (see blocked_attention.h).
#include "kv/attention/blocked_attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <vector>

#include "kv/attention/tile_kernels.h"
#include "util/thread_pool.h"

namespace lmlab {

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr int64_t kMaxRows = 32;           // query rows (tokens x heads of a group) per work item, if G <= 32
constexpr int64_t kTile = 32;              // keys decoded and scored at a time: the K and V tiles stay in L1
constexpr int64_t kMinBlocksPerSplit = 4;  // a key range of a split holds at least this many blocks

struct Shape {
  int64_t d, n_kv, n_heads, group, block, n_q, q_pos0;
  int64_t k_row, dv;  // score-row floats of the K codec (query rows), and of the V codec (accumulator rows)
};

// Online-softmax state of nr query rows: running max m, sum l, accumulator acc [nr][dv] (rotated domain).
struct RowState {
  float* m;
  float* l;
  float* acc;
};

// Per-thread scratch, reused across calls.
struct Scratch {
  std::vector<float> tile_k, tile_v, s, alpha, m, l, acc;
  void reserve(const Shape& sh, int64_t rows) {
    tile_k.resize(static_cast<size_t>(kTile * sh.k_row));
    tile_v.resize(static_cast<size_t>(kTile * sh.dv));
    s.resize(static_cast<size_t>(rows * kTile));
    alpha.resize(static_cast<size_t>(rows));
    m.resize(static_cast<size_t>(rows));
    l.resize(static_cast<size_t>(rows));
    acc.resize(static_cast<size_t>(rows * sh.dv));
  }
};

// Visible key positions [lo, hi) of the query at position pos.
inline int64_t visible_lo(const AttentionSpec& spec, int64_t pos) {
  return spec.window > 0 ? std::max<int64_t>(0, pos - spec.window + 1) : 0;
}
inline int64_t visible_hi(int64_t n_tokens, int64_t pos) {
  return std::min(n_tokens, pos + 1);
}

// Asks for the records of KV head kh at positions [p, e) (within one block) while the current segment is scored.
// Consecutive segments usually sit in different blocks (separate allocations), where the hardware prefetcher
// would start cold at every block: with 32-position blocks that cost TurboQuant decode 8-21% at 16K.
void prefetch_segment(const BlockedKvView& c, const Shape& sh, int64_t kh, int64_t p, int64_t e) {
  const bool cold = p < c.n_compressed;
  const KvRecordTable& tab = cold ? c.cold : c.hot;
  const int64_t B = sh.block, b = p / B, slot = p - b * B;
  if (cold) e = std::min(e, c.n_compressed);
  e = std::min(e, (b + 1) * B);
  const uint8_t* blk = tab.blocks[b];
  if (!blk || e <= p) return;
  const int64_t k_rec = tab.k->record_bytes(), v_rec = tab.v->record_bytes();
  const uint8_t* k = blk + (kh * B + slot) * k_rec;
  const uint8_t* v = blk + sh.n_kv * B * k_rec + (kh * B + slot) * v_rec;
  for (int64_t off = 0; off < (e - p) * k_rec; off += 64) __builtin_prefetch(k + off);
  for (int64_t off = 0; off < (e - p) * v_rec; off += 64) __builtin_prefetch(v + off);
}

// Attends query rows of tokens [t0, t1) of KV head kh over key positions [k0, k1), updating st.
void attend_range(const BlockedKvView& c, const Shape& sh, const AttentionSpec& spec, const TileKernels& kern,
                  const float* qp, int64_t kh, int64_t t0, int64_t t1, int64_t k0, int64_t k1, RowState st,
                  Scratch& sc) {
  const int64_t G = sh.group, B = sh.block, nr = (t1 - t0) * G;
  for (int64_t p = k0; p < k1;) {
    const int64_t b = p / B, slot = p - b * B;
    const bool cold = p < c.n_compressed;
    const KvRecordTable& tab = cold ? c.cold : c.hot;
    int64_t e = std::min({k1, (b + 1) * B, p + kTile});
    if (cold) e = std::min(e, c.n_compressed);
    const int64_t nb = e - p;
    // Rows that see part of [p, e); the whole segment is skipped when none does.
    bool any = false;
    for (int64_t t = t0; t < t1 && !any; ++t) {
      const int64_t pos = sh.q_pos0 + t;
      any = std::max(visible_lo(spec, pos), p) < std::min(visible_hi(c.n_tokens, pos), e);
    }
    if (!any) {
      p = e;
      continue;
    }
    const int64_t k_rec = tab.k->record_bytes(), v_rec = tab.v->record_bytes();
    if (e < k1) prefetch_segment(c, sh, kh, e, std::min(k1, e + kTile));
    int64_t ldk, ldv;
    const float* kt = tab.k->decode_tile(tab.blocks[b] + (kh * B + slot) * k_rec, k_rec, nb, sc.tile_k.data(),
                                         sh.k_row, &ldk);
    float* s = sc.s.data();
    kern.scores(qp, sh.k_row, nr, kt, ldk, nb, tab.k->row_floats(), s, kTile);
    for (int64_t r = 0; r < nr; ++r) {
      float* sr = s + r * kTile;
      const int64_t pos = sh.q_pos0 + t0 + r / G;
      const int64_t ja = std::max(visible_lo(spec, pos), p) - p, jb = std::min(visible_hi(c.n_tokens, pos), e) - p;
      if (ja >= jb) {
        sc.alpha[r] = 1.0f;
        std::fill(sr, sr + nb, 0.0f);
        continue;
      }
      // The query rows carry the softmax scale already (blocked_attend).
      if (spec.softcap > 0.0f)
        for (int64_t j = ja; j < jb; ++j) sr[j] = spec.softcap * std::tanh(sr[j] / spec.softcap);
      const float mx = kern.max(sr + ja, jb - ja);
      const float m_new = std::max(st.m[r], mx);
      const float alpha = st.m[r] == kNegInf ? 0.0f : std::exp(st.m[r] - m_new);
      const float sum = kern.exp_sum(sr + ja, jb - ja, m_new);
      std::fill(sr, sr + ja, 0.0f);
      std::fill(sr + jb, sr + nb, 0.0f);
      st.l[r] = st.l[r] * alpha + sum;
      st.m[r] = m_new;
      sc.alpha[r] = alpha;
    }
    const float* vt = tab.v->decode_tile(tab.blocks[b] + sh.n_kv * B * k_rec + (kh * B + slot) * v_rec, v_rec, nb,
                                         sc.tile_v.data(), sh.dv, &ldv);
    kern.accumulate(st.acc, sh.dv, nr, sc.alpha.data(), s, kTile, vt, ldv, nb, sh.dv);
    p = e;
  }
}

// out = Pi^T (acc / l) for one row (zeros when the row saw no key).
void finalize_row(const BlockedKvView& c, const float* acc, float l, int64_t d, float* out) {  // acc [>= d]
  if (!(l > 0.0f)) {
    std::fill(out, out + d, 0.0f);
    return;
  }
  const float inv = 1.0f / l;
  for (int64_t i = 0; i < d; ++i) out[i] = acc[i] * inv;
  if (c.rotation) c.rotation->inverse(out, out);
}

}  // namespace

void blocked_attend(const BlockedKvView& c, int64_t n_heads, const float* q, int64_t n_q, int64_t q_pos0,
               const AttentionSpec& spec, float* out) {
  if (n_q <= 0 || n_heads <= 0) return;
  Shape sh;
  sh.d = c.head_dim;
  sh.n_kv = c.n_kv_heads;
  sh.n_heads = n_heads;
  sh.group = n_heads / c.n_kv_heads;
  sh.block = c.block_tokens;
  sh.k_row = c.cold.k->row_floats();
  sh.dv = c.cold.v->row_floats();
  sh.n_q = n_q;
  sh.q_pos0 = q_pos0;
  const int64_t d = sh.d, dv = sh.dv, G = sh.group, n_rows = n_q * n_heads;
  ThreadPool& pool = ThreadPool::global();

  // 1. Queries in the working domain, ordered [kv head][token][head of the group], then as score rows.
  // Reused per calling thread (grow-only): fresh vectors of a prefill's queries (0.5-4 MB per layer) were
  // mmap'd, zeroed and page-faulted at every layer, ~10% of coder-dense's prefill (perf).
  thread_local std::vector<float> qrot_buf, qp_buf;
  if (qrot_buf.size() < static_cast<size_t>(n_rows * d)) qrot_buf.resize(static_cast<size_t>(n_rows * d));
  if (qp_buf.size() < static_cast<size_t>(n_rows * sh.k_row)) qp_buf.resize(static_cast<size_t>(n_rows * sh.k_row));
  float* const qrot = qrot_buf.data();
  float* const qp = qp_buf.data();
  auto row_of = [&](int64_t t, int64_t h) { return ((h / G) * n_q + t) * G + h % G; };
  pool.parallel_for(
      n_rows,
      [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) {
          const int64_t t = i / n_heads, h = i % n_heads;
          float* dst = qrot + row_of(t, h) * d;
          if (c.rotation)
            c.rotation->forward(q + i * d, dst);
          else
            std::memcpy(dst, q + i * d, static_cast<size_t>(d) * sizeof(float));
        }
      },
      8);
  c.cold.k->prepare_queries(qrot, n_rows, qp);
  for (int64_t i = 0; i < n_rows * sh.k_row; ++i) qp[i] *= spec.scale;  // scores come out scaled

  // 2. Work items: KV head x token tile x key split.
  const int64_t tile_tokens = std::max<int64_t>(1, kMaxRows / G), rows_max = tile_tokens * G;
  const int64_t n_tiles = (n_q + tile_tokens - 1) / tile_tokens;
  const int64_t base = sh.n_kv * n_tiles;
  const int64_t n_blocks = (c.n_tokens + sh.block - 1) / sh.block;
  int64_t n_split = 1;
  if (base < 4 * pool.size())
    n_split = std::max<int64_t>(1, std::min((4 * pool.size() + base - 1) / base, n_blocks / kMinBlocksPerSplit));
  const int64_t n_items = base * n_split;
  const int64_t part_stride = rows_max * (dv + 2);  // per item: m [rows_max], l [rows_max], acc [rows_max][dv]
  // Each item initialises its own rows; no need to clear the whole buffer.
  std::unique_ptr<float[]> partial(n_split > 1 ? new float[static_cast<size_t>(n_items * part_stride)] : nullptr);
  const TileKernels& kern = tile_kernels();

  pool.parallel_for(n_items, [&](int64_t i0, int64_t i1) {
    thread_local Scratch sc;
    sc.reserve(sh, rows_max);
    for (int64_t item = i0; item < i1; ++item) {
      const int64_t split = item % n_split, tile = (item / n_split) % n_tiles, kh = item / (n_split * n_tiles);
      const int64_t t0 = tile * tile_tokens, t1 = std::min(n_q, t0 + tile_tokens), nr = (t1 - t0) * G;
      // Key positions any row of the tile can see, cut into n_split ranges on block boundaries.
      const int64_t lo = visible_lo(spec, q_pos0 + t0), hi = visible_hi(c.n_tokens, q_pos0 + t1 - 1);
      const int64_t b_lo = lo / sh.block, b_hi = (std::max(hi, lo) + sh.block - 1) / sh.block;
      const int64_t sb0 = b_lo + (b_hi - b_lo) * split / n_split, sb1 = b_lo + (b_hi - b_lo) * (split + 1) / n_split;
      const int64_t k0 = std::max(lo, sb0 * sh.block), k1 = std::min(hi, sb1 * sh.block);
      RowState st;
      if (n_split > 1) {
        float* part = partial.get() + item * part_stride;
        st = {part, part + rows_max, part + 2 * rows_max};
      } else {
        st = {sc.m.data(), sc.l.data(), sc.acc.data()};
      }
      std::fill(st.m, st.m + nr, kNegInf);
      std::fill(st.l, st.l + nr, 0.0f);
      std::fill(st.acc, st.acc + nr * dv, 0.0f);
      const float* qrows = qp + (kh * n_q + t0) * G * sh.k_row;
      attend_range(c, sh, spec, kern, qrows, kh, t0, t1, k0, k1, st, sc);
      if (n_split == 1)
        for (int64_t r = 0; r < nr; ++r) {
          const int64_t t = t0 + r / G, h = kh * G + r % G;
          finalize_row(c, st.acc + r * dv, st.l[r], d, out + (t * n_heads + h) * d);
        }
    }
  });
  if (n_split == 1) return;

  // 3. Merge the splits: M = max m_s, l = sum l_s e^(m_s - M), acc = sum acc_s e^(m_s - M).
  auto merge = [&](int64_t i0, int64_t i1) {
    std::vector<float> acc(static_cast<size_t>(dv));
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t t = i / n_heads, h = i % n_heads, kh = h / G, tile = t / tile_tokens;
      const int64_t r = (t - tile * tile_tokens) * G + h % G;
      const float* first = partial.get() + (kh * n_tiles + tile) * n_split * part_stride;
      float mx = kNegInf;
      for (int64_t s = 0; s < n_split; ++s) mx = std::max(mx, first[s * part_stride + r]);
      std::fill(acc.begin(), acc.end(), 0.0f);
      float l = 0.0f;
      if (mx != kNegInf)
        for (int64_t s = 0; s < n_split; ++s) {
          const float* part = first + s * part_stride;
          if (part[r] == kNegInf) continue;
          const float w = std::exp(part[r] - mx);
          l += w * part[rows_max + r];
          const float* a = part + 2 * rows_max + r * dv;
          for (int64_t k = 0; k < d; ++k) acc[k] += w * a[k];
        }
      finalize_row(c, acc.data(), l, d, out + i * d);
    }
  };
  if (n_rows * n_split * dv <= (int64_t{1} << 18))
    merge(0, n_rows);  // a decode step: cheaper than a dispatch
  else
    pool.parallel_for(n_rows, merge, 4);
}

}  // namespace lmlab
