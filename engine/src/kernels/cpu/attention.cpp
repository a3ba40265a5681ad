// Optimised causal attention with grouped KV heads, sliding window and soft-capping (semantics: kernels.h).
// Threads split (KV head, query token) items; an item serves the query heads that share that KV head (the
// GQA group) and makes one pass over the visible keys only (positions in (pos - window, pos]) in blocks of
// kBlock. Per block and head: scores q.k * scale (+ cap * tanh(s / cap)), then an online softmax: running
// max m, sum l and accumulator acc[head_dim] are rescaled by e^(m_old - m_new) when the max grows, and
// acc += e^(s_j - m) * v_j. Scratch is group * (head_dim + kBlock) floats per thread; nothing is
// O(n_q * n_kv). The per-ISA parts (4-key dot products, block exp + sum, V accumulation) are small functions
// behind one driver.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/cpu/isa.h"
#include "kernels/cpu/exp_sum.h"
#include "kernels/cpu/simd.h"
#include "kernels/kernels.h"
#include "util/thread_pool.h"

namespace lmlab::kernels::cpu {

namespace {

constexpr int64_t kBlock = 64;  // keys per online-softmax step

struct Ops {
  // s[j] = q . k_j for j < n_keys, k_j = k + j * ldk, vectors of length d.
  void (*dots)(const float* q, const float* k, int64_t ldk, int64_t d, int64_t n_keys, float* s);
  // s[j] = e^(s[j] - m) in place; returns the sum.
  float (*exp_sum)(float* s, int64_t n, float m);
  // acc[d] = acc[d] * alpha + sum_j p[j] * v_j[d], v_j = v + j * ldv.
  void (*accumulate)(float* acc, float alpha, const float* p, const float* v, int64_t ldv, int64_t d, int64_t n_keys);
};

// ------------------------------------------------------------------------------------------- scalar

void dots_scalar(const float* q, const float* k, int64_t ldk, int64_t d, int64_t n_keys, float* s) {
  for (int64_t j = 0; j < n_keys; ++j) {
    const float* kj = k + j * ldk;
    float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
    int64_t i = 0;
    for (; i + 4 <= d; i += 4) {
      a0 += q[i] * kj[i];
      a1 += q[i + 1] * kj[i + 1];
      a2 += q[i + 2] * kj[i + 2];
      a3 += q[i + 3] * kj[i + 3];
    }
    for (; i < d; ++i) a0 += q[i] * kj[i];
    s[j] = (a0 + a1) + (a2 + a3);
  }
}

void accumulate_scalar(float* acc, float alpha, const float* p, const float* v, int64_t ldv, int64_t d, int64_t n_keys) {
  if (alpha != 1.0f)
    for (int64_t i = 0; i < d; ++i) acc[i] *= alpha;
  for (int64_t j = 0; j < n_keys; ++j) {
    const float* vj = v + j * ldv;
    for (int64_t i = 0; i < d; ++i) acc[i] += p[j] * vj[i];
  }
}

#if LMLAB_X86
// ------------------------------------------------------------------------------------------- AVX-512

LMLAB_TARGET_AVX512 void dots_avx512(const float* q, const float* k, int64_t ldk, int64_t d, int64_t n_keys, float* s) {
  int64_t j = 0;
  for (; j + 4 <= n_keys; j += 4) {
    const float* k0 = k + j * ldk;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t i = 0; i < d; i += 16) {
      const __mmask16 m = simd::tail_mask16(std::min<int64_t>(16, d - i));
      const __m512 qv = _mm512_maskz_loadu_ps(m, q + i);
      a0 = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(m, k0 + i), a0);
      a1 = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(m, k0 + ldk + i), a1);
      a2 = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(m, k0 + 2 * ldk + i), a2);
      a3 = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(m, k0 + 3 * ldk + i), a3);
    }
    _mm_storeu_ps(s + j, simd::hsum4(a0, a1, a2, a3));
  }
  for (; j < n_keys; ++j) {
    const float* kj = k + j * ldk;
    __m512 a0 = _mm512_setzero_ps();
    for (int64_t i = 0; i < d; i += 16) {
      const __mmask16 m = simd::tail_mask16(std::min<int64_t>(16, d - i));
      a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, q + i), _mm512_maskz_loadu_ps(m, kj + i), a0);
    }
    s[j] = _mm512_reduce_add_ps(a0);
  }
}

LMLAB_TARGET_AVX512 void accumulate_avx512(float* acc, float alpha, const float* p, const float* v, int64_t ldv,
                                           int64_t d, int64_t n_keys) {
  // Key-major: each V row is read once, contiguously (rows are n_kv_heads * head_dim apart, often 4 KiB,
  // which would thrash L1 sets if walked column-wise); acc [d] stays in L1.
  const __m512 av = _mm512_set1_ps(alpha);
  for (int64_t i = 0; i < d; i += 16) {
    const __mmask16 m = simd::tail_mask16(std::min<int64_t>(16, d - i));
    _mm512_mask_storeu_ps(acc + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, acc + i), av));
  }
  int64_t j = 0;
  for (; j + 2 <= n_keys; j += 2) {
    const __m512 p0 = _mm512_set1_ps(p[j]), p1 = _mm512_set1_ps(p[j + 1]);
    const float *v0 = v + j * ldv, *v1 = v0 + ldv;
    for (int64_t i = 0; i < d; i += 16) {
      const __mmask16 m = simd::tail_mask16(std::min<int64_t>(16, d - i));
      __m512 a = _mm512_maskz_loadu_ps(m, acc + i);
      a = _mm512_fmadd_ps(p0, _mm512_maskz_loadu_ps(m, v0 + i), a);
      a = _mm512_fmadd_ps(p1, _mm512_maskz_loadu_ps(m, v1 + i), a);
      _mm512_mask_storeu_ps(acc + i, m, a);
    }
  }
  if (j < n_keys) {
    const __m512 p0 = _mm512_set1_ps(p[j]);
    const float* v0 = v + j * ldv;
    for (int64_t i = 0; i < d; i += 16) {
      const __mmask16 m = simd::tail_mask16(std::min<int64_t>(16, d - i));
      _mm512_mask_storeu_ps(acc + i, m, _mm512_fmadd_ps(p0, _mm512_maskz_loadu_ps(m, v0 + i), _mm512_maskz_loadu_ps(m, acc + i)));
    }
  }
}

// ------------------------------------------------------------------------------------------- AVX2

LMLAB_TARGET_AVX2 void dots_avx2(const float* q, const float* k, int64_t ldk, int64_t d, int64_t n_keys, float* s) {
  const int64_t dv = d & ~int64_t{7};
  int64_t j = 0;
  for (; j + 4 <= n_keys; j += 4) {
    const float* k0 = k + j * ldk;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t i = 0; i < dv; i += 8) {
      const __m256 qv = _mm256_loadu_ps(q + i);
      a0 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k0 + i), a0);
      a1 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k0 + ldk + i), a1);
      a2 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k0 + 2 * ldk + i), a2);
      a3 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k0 + 3 * ldk + i), a3);
    }
    _mm_storeu_ps(s + j, simd::hsum4(a0, a1, a2, a3));
    for (int64_t i = dv; i < d; ++i)
      for (int64_t r = 0; r < 4; ++r) s[j + r] += q[i] * k0[r * ldk + i];
  }
  for (; j < n_keys; ++j) {
    const float* kj = k + j * ldk;
    __m256 a0 = _mm256_setzero_ps();
    for (int64_t i = 0; i < dv; i += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), _mm256_loadu_ps(kj + i), a0);
    float sj = simd::hsum8(a0);
    for (int64_t i = dv; i < d; ++i) sj += q[i] * kj[i];
    s[j] = sj;
  }
}

LMLAB_TARGET_AVX2 void accumulate_avx2(float* acc, float alpha, const float* p, const float* v, int64_t ldv,
                                       int64_t d, int64_t n_keys) {
  // Key-major like the AVX-512 version; the d % 8 tail columns are done in scalar per key.
  const int64_t dv = d & ~int64_t{7};
  const __m256 av = _mm256_set1_ps(alpha);
  for (int64_t i = 0; i < dv; i += 8) _mm256_storeu_ps(acc + i, _mm256_mul_ps(_mm256_loadu_ps(acc + i), av));
  for (int64_t i = dv; i < d; ++i) acc[i] *= alpha;
  int64_t j = 0;
  for (; j + 2 <= n_keys; j += 2) {
    const __m256 p0 = _mm256_set1_ps(p[j]), p1 = _mm256_set1_ps(p[j + 1]);
    const float *v0 = v + j * ldv, *v1 = v0 + ldv;
    for (int64_t i = 0; i < dv; i += 8) {
      __m256 x = _mm256_fmadd_ps(p0, _mm256_loadu_ps(v0 + i), _mm256_loadu_ps(acc + i));
      _mm256_storeu_ps(acc + i, _mm256_fmadd_ps(p1, _mm256_loadu_ps(v1 + i), x));
    }
    for (int64_t i = dv; i < d; ++i) acc[i] += p[j] * v0[i] + p[j + 1] * v1[i];
  }
  if (j < n_keys) {
    const __m256 p0 = _mm256_set1_ps(p[j]);
    const float* v0 = v + j * ldv;
    for (int64_t i = 0; i < dv; i += 8)
      _mm256_storeu_ps(acc + i, _mm256_fmadd_ps(p0, _mm256_loadu_ps(v0 + i), _mm256_loadu_ps(acc + i)));
    for (int64_t i = dv; i < d; ++i) acc[i] += p[j] * v0[i];
  }
}
#endif  // LMLAB_X86

// ------------------------------------------------------------------------------------------- driver

// Online-softmax state of one query head: running max m, running sum l; acc [head_dim], s [kBlock].
struct HeadState {
  float m, l;
  float* acc;
  float* s;
};

// One work item: query token t and heads [h0, h1), which all read KV head kh. Each key block is scored and
// accumulated for every head in turn while it is hot in L1 / L2, so grouped heads share the K / V traffic.
// scratch: [(h1 - h0) * (head_dim + kBlock)].
void attend_item(const AttentionArgs& a, const Ops& ops, int64_t t, int64_t h0, int64_t h1, float* scratch) {
  const int64_t d = a.head_dim, kh = h0 / (a.n_heads / a.n_kv_heads), ld = a.n_kv_heads * d;
  const int64_t pos = a.q_pos0 + t, n_h = h1 - h0;
  // Visible keys j: kv_pos0 + j <= pos and, with a window, kv_pos0 + j > pos - window.
  const int64_t j_end = std::min(a.n_kv, pos - a.kv_pos0 + 1);
  const int64_t j_begin = a.window > 0 ? std::max<int64_t>(0, pos - a.window + 1 - a.kv_pos0) : 0;
  const float* q = a.q + (t * a.n_heads + h0) * d;  // [n_h, d]
  float* out = a.out + (t * a.n_heads + h0) * d;    // [n_h, d]
  if (j_begin >= j_end) {
    std::fill(out, out + n_h * d, 0.0f);
    return;
  }
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  HeadState st[64];  // n_h <= kMaxHeadsPerItem
  for (int64_t h = 0; h < n_h; ++h) {
    st[h] = {kNegInf, 0.0f, scratch + h * (d + kBlock), scratch + h * (d + kBlock) + d};
    std::fill(st[h].acc, st[h].acc + d, 0.0f);
  }
  for (int64_t j0 = j_begin, nb; j0 < j_end; j0 += nb) {
    nb = std::min(kBlock, j_end - j0);
    if (a.k_blocks) nb = std::min(nb, a.block_tokens - j0 % a.block_tokens);  // stay inside one page
    const float* k = attention_k_row(a, j0) + kh * d;  // [nb] rows of ld
    const float* v = attention_v_row(a, j0) + kh * d;
    for (int64_t h = 0; h < n_h; ++h) {
      HeadState& hs = st[h];
      ops.dots(q + h * d, k, ld, d, nb, hs.s);
      float m_blk = kNegInf;
      for (int64_t j = 0; j < nb; ++j) {
        float sj = hs.s[j] * a.scale;
        if (a.softcap > 0.0f) sj = a.softcap * std::tanh(sj / a.softcap);
        hs.s[j] = sj;
        m_blk = std::max(m_blk, sj);
      }
      const float m_new = std::max(hs.m, m_blk);
      const float alpha = hs.m == kNegInf ? 0.0f : std::exp(hs.m - m_new);
      hs.l = hs.l * alpha + ops.exp_sum(hs.s, nb, m_new);
      ops.accumulate(hs.acc, alpha, hs.s, v, ld, d, nb);
      hs.m = m_new;
    }
  }
  for (int64_t h = 0; h < n_h; ++h) {
    const float inv = 1.0f / st[h].l;
    for (int64_t i = 0; i < d; ++i) out[h * d + i] = st[h].acc[i] * inv;
  }
}

}  // namespace

void attention(const AttentionArgs& a) {
  if (a.n_q <= 0 || a.n_heads <= 0 || a.head_dim <= 0) return;
  Ops ops{&dots_scalar, &simd::exp_sum_scalar, &accumulate_scalar};
#if LMLAB_X86
  const Isa isa = active_isa();
  if (isa == Isa::avx512) ops = {&dots_avx512, &simd::exp_sum_avx512, &accumulate_avx512};
  else if (isa == Isa::avx2) ops = {&dots_avx2, &simd::exp_sum_avx2, &accumulate_avx2};
#endif
  // Items: (kv head, query token, slice of that kv head's query heads), kv head outermost so consecutive
  // items (one thread's chunk) reuse the same K / V rows. The query heads of a group are split into slices
  // only when there would otherwise be fewer than two items per thread (decode with few KV heads).
  const int64_t group = a.n_heads / a.n_kv_heads;
  const int64_t want_items = 2 * ThreadPool::global().size();
  int64_t split = std::min(group, std::max<int64_t>(1, (want_items + a.n_q * a.n_kv_heads - 1) / (a.n_q * a.n_kv_heads)));
  int64_t per_item = (group + split - 1) / split;
  per_item = std::min<int64_t>(per_item, 64);  // HeadState array bound
  split = (group + per_item - 1) / per_item;
  const int64_t n_items = a.n_kv_heads * a.n_q * split;
  ThreadPool::global().parallel_for(n_items, [&](int64_t i0, int64_t i1) {
    std::vector<float> scratch(static_cast<size_t>(per_item * (a.head_dim + kBlock)));
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t kh = i / (a.n_q * split), t = (i / split) % a.n_q, sl = i % split;
      const int64_t h0 = kh * group + sl * per_item, h1 = std::min(kh * group + group, h0 + per_item);
      attend_item(a, ops, t, h0, h1, scratch.data());
    }
  });
}

}  // namespace lmlab::kernels::cpu
