// ids_by_logit: an LSD radix sort over 32-bit keys that order the logits as logit_ahead does; first_ids_by_logit and
// first_ids_holding: the first ranks of that order without sorting the rest (a heap, or a histogram of the keys).
#include "generate/logit_order.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>

namespace lmlab {

namespace {

// Ascending in the key = logit_ahead's order: larger logits first, -0 equal to +0, NaN (any payload) last. No
// branches, so the key passes vectorise.
uint32_t descending_key(float v) {
  uint32_t u = std::bit_cast<uint32_t>(v);
  const uint32_t magnitude = u & 0x7FFFFFFFu;
  u = magnitude == 0 ? 0u : u;                                              // -0 ties with +0
  const uint32_t ascending = (u & 0x80000000u) ? ~u : (u | 0x80000000u);  // float order as unsigned order
  return magnitude > 0x7F800000u ? 0xFFFFFFFFu : ~ascending;  // NaN: no number's key reaches it
}

// The keys of a vocabulary and how many fall in each bucket of their top 16 bits (ranks run bucket by bucket).
struct KeyBuckets {
  static constexpr int kShift = 16;
  std::vector<uint32_t>& keys;
  std::array<uint32_t, 1u << 16>& count;
};
KeyBuckets key_buckets(std::span<const float> logits) {
  thread_local std::vector<uint32_t> keys;
  thread_local std::array<uint32_t, 1u << 16> count;
  keys.resize(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) keys[i] = descending_key(logits[i]);
  count.fill(0);
  for (const uint32_t k : keys) ++count[k >> KeyBuckets::kShift];
  return {keys, count};
}

// The first n of the order among the ids whose key bucket is at most `last` (which must hold them).
std::vector<int32_t> first_of_buckets(const std::vector<uint32_t>& keys, uint32_t last, size_t n) {
  std::vector<uint64_t> picked;  // key << 32 | id: unique, so the first n of the order are the n smallest
  for (size_t i = 0; i < keys.size(); ++i)
    if ((keys[i] >> KeyBuckets::kShift) <= last) picked.push_back(uint64_t{keys[i]} << 32 | i);
  std::nth_element(picked.begin(), picked.begin() + static_cast<std::ptrdiff_t>(n - 1), picked.end());
  std::sort(picked.begin(), picked.begin() + static_cast<std::ptrdiff_t>(n));
  std::vector<int32_t> ids(n);
  for (size_t i = 0; i < n; ++i) ids[i] = static_cast<int32_t>(picked[i] & 0xFFFFFFFFu);
  return ids;
}

// The first n (at most kFewIds) of the order in one pass that mostly compares logits with the n-th's so far: a heap
// of the best n (key << 32 | id, the worst on top), and blocks of 16 logits none of which beats the worst skipped
// (equal does not: its id is higher). Empty when fewer than n logits are numbers (the NaNs would be needed).
constexpr size_t kFewIds = 64;
std::vector<int32_t> few_first_ids(std::span<const float> logits, size_t n) {
  const size_t v = logits.size();
  std::vector<uint64_t> heap;
  heap.reserve(n);
  size_t i = 0;
  for (; i < v && heap.size() < n; ++i)
    if (!std::isnan(logits[i])) heap.push_back(uint64_t{descending_key(logits[i])} << 32 | i);
  if (heap.size() < n) return {};
  std::make_heap(heap.begin(), heap.end());
  float worst = logits[heap.front() & 0xFFFFFFFFu];
  while (i < v) {
    if (i + 16 <= v) {
      bool any = false;
      for (size_t j = 0; j < 16; ++j) any |= logits[i + j] > worst;
      if (!any) {
        i += 16;
        continue;
      }
    }
    const size_t end = std::min(v, i + 16);
    for (; i < end; ++i) {
      if (!(logits[i] > worst)) continue;
      std::pop_heap(heap.begin(), heap.end());
      heap.back() = uint64_t{descending_key(logits[i])} << 32 | i;
      std::push_heap(heap.begin(), heap.end());
      worst = logits[heap.front() & 0xFFFFFFFFu];
    }
  }
  std::sort_heap(heap.begin(), heap.end());
  std::vector<int32_t> ids(n);
  for (size_t k = 0; k < n; ++k) ids[k] = static_cast<int32_t>(heap[k] & 0xFFFFFFFFu);
  return ids;
}

}  // namespace

std::vector<int32_t> ids_by_logit(std::span<const float> logits) {
  const size_t n = logits.size();
  // key << 32 | id: each pass is stable and the ids start ascending, so equal keys keep the lower id first. The
  // buffers stay with the thread: 2.4 MB fresh at every call cost more in page faults than the passes (dev VM, CPU
  // time: ~11 ms a call fresh, 1.7 ms reused: BM_rank_radix; the comparison sort 15 ms: BM_rank_comparison).
  thread_local std::vector<uint64_t> a, b;
  a.resize(n), b.resize(n);
  for (size_t i = 0; i < n; ++i) a[i] = uint64_t{descending_key(logits[i])} << 32 | i;
  constexpr int kDigitBits = 11;
  for (int shift = 32; shift < 64; shift += kDigitBits) {  // 11, 11 and 10 bits of the key
    std::array<size_t, (1u << kDigitBits) + 1> at{};
    const uint64_t mask = (uint64_t{1} << kDigitBits) - 1;
    for (const uint64_t x : a) ++at[((x >> shift) & mask) + 1];
    for (size_t d = 1; d < at.size(); ++d) at[d] += at[d - 1];
    for (const uint64_t x : a) b[at[(x >> shift) & mask]++] = x;
    a.swap(b);
  }
  std::vector<int32_t> ids(n);
  for (size_t i = 0; i < n; ++i) ids[i] = static_cast<int32_t>(a[i] & 0xFFFFFFFFu);
  return ids;
}

namespace {
// The first n of the whole ranking (the radix sort, cut).
std::vector<int32_t> sorted_prefix(std::span<const float> logits, size_t n) {
  std::vector<int32_t> ids = ids_by_logit(logits);
  ids.resize(n);
  return ids;
}
}  // namespace

std::vector<int32_t> first_ids_by_logit(std::span<const float> logits, size_t n) {
  const size_t v = logits.size();
  n = std::min(n, v);
  if (n == 0) return {};
  if (n > v / 4) return sorted_prefix(logits, n);  // most of the order: the full sort is as cheap
  if (n <= kFewIds)
    if (std::vector<int32_t> ids = few_first_ids(logits, n); !ids.empty()) return ids;
  const KeyBuckets b = key_buckets(logits);
  uint32_t last = 0;  // the bucket holding the n-th
  for (size_t seen = 0; (seen += b.count[last]) < n;) ++last;
  return first_of_buckets(b.keys, last, n);
}

std::vector<int32_t> first_ids_holding(std::span<const float> logits, std::span<const float> weights, double mass,
                                       size_t at_most) {
  const size_t v = logits.size();
  const KeyBuckets b = key_buckets(logits);
  thread_local std::array<double, 1u << 16> bucket_mass;
  bucket_mass.fill(0.0);
  for (size_t i = 0; i < v; ++i) bucket_mass[b.keys[i] >> KeyBuckets::kShift] += weights[i];
  // The bucket where the weights reach mass, or the one holding the at_most-th id, whichever comes first.
  size_t ranks = 0;
  uint32_t last = 0;
  double cum = 0.0;
  for (;; ++last) {
    ranks += b.count[last];
    if (((cum += bucket_mass[last]) >= mass && ranks > 0) || ranks >= at_most || last == 0xFFFFu) break;
  }
  const size_t n = std::min({ranks, at_most, v});
  if (n == 0) return {};
  if (n > v / 4) return sorted_prefix(logits, n);
  return first_of_buckets(b.keys, last, n);
}

}  // namespace lmlab
