#include "cuda/weight_prefetch.h"

#include <algorithm>
#include <cstdlib>

namespace lmlab::cuda {

namespace {

namespace kc = kernels::cuda;

int env_int(const char* name, int fallback) {
  const char* e = std::getenv(name);
  return e && *e ? std::atoi(e) : fallback;
}

// The bytes of `rows` rows of each array a GEMV reads of w: packed codes, scales and biases (affine), or the values.
struct RowBytes {
  uint64_t values = 0, scales = 0;  // per row; scales: each of the scales and the biases
  uint64_t total() const { return values + 2 * scales; }
};
RowBytes row_bytes(const kc::DeviceWeight& w) {
  const uint64_t cols = static_cast<uint64_t>(w.cols);
  if (!w.affine) return {cols * (w.type == kernels::WeightType::f32 ? 4u : 2u), 0};
  const uint64_t scale = w.quant.scale_type == kernels::ScaleType::f32 ? 4u : 2u;
  return {cols * static_cast<uint64_t>(w.quant.bits) / 8, cols / static_cast<uint64_t>(w.quant.group_size) * scale};
}

// The first `rows` rows of w into p.
void add_rows(kc::L2Prefetch& p, const kc::DeviceWeight& w, int64_t rows) {
  const RowBytes r = row_bytes(w);
  const uint64_t n = static_cast<uint64_t>(std::min(rows, w.rows));
  if (!w.affine) {
    p.add(w.dense, n * r.values);
    return;
  }
  p.add(w.quant.packed, n * r.values);
  p.add(w.quant.scales, n * r.scales);
  p.add(w.quant.biases, n * r.scales);
}

}  // namespace

WeightPrefetchOptions WeightPrefetchOptions::from_environment() {
  WeightPrefetchOptions o;
  o.budget_bytes = static_cast<uint64_t>(std::max(0, env_int("LMLAB_L2_PREFETCH_MB", 0))) << 20;
  o.from_percent = std::clamp(env_int("LMLAB_L2_PREFETCH_FROM", o.from_percent), 0, 99);
  return o;
}

kc::L2Prefetch weights_after_attention(const DeviceLayer& w, bool moe, const WeightPrefetchOptions& o) {
  kc::L2Prefetch p;
  p.from_percent = o.from_percent;
  if (o.budget_bytes == 0) return p;
  const kc::DeviceWeight& out = w.o.w;
  const uint64_t out_row = row_bytes(out).total();
  const int64_t out_rows = static_cast<int64_t>(std::min<uint64_t>(o.budget_bytes / out_row, out.rows));
  add_rows(p, out, out_rows);
  if (moe || out_rows < out.rows) return p;
  const uint64_t left = o.budget_bytes - out_row * static_cast<uint64_t>(out.rows);
  const uint64_t pair_row = row_bytes(w.gate.w).total() + row_bytes(w.up.w).total();
  const int64_t rows = static_cast<int64_t>(left / pair_row);
  if (rows > 0) add_rows(p, w.gate.w, rows), add_rows(p, w.up.w, rows);
  return p;
}

}  // namespace lmlab::cuda
