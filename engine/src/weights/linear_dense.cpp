// Dense Linear over f32 / f16 / bf16 weights, used in place (the memory-mapped file or an expert buffer), or, once
// the CPU backend prepares a resident matrix for decode (prepare_decode), from a copy in 2 MB-aligned memory marked
// for transparent huge pages, the mapped pages then let go (drop_stored_pages): decode streams every weight byte
// once per token, and through the file's 4 KB pages the 0.9B bf16 synth decoded with steps of 45-60 ms and 117 ms
// outliers (TLB misses; p90 117 vs 50 ms), 15.7 vs 21.7 tok/s with the copy (docs/measurements.md). Same bytes,
// same kernel: bit-identical results. LMLAB_DENSE_HUGEPAGES=0 keeps the mapped bytes (to measure the difference).
// bf16 / f16 matrices of at least 2^20 weights let prefill run on 14-bit integers (kernels/cpu/matmul_half_i16.h): twice
// the exact GEMM's rate, ~3e-3 of a logit on the golden fixtures. Smaller ones (little to gain: they stay in cache)
// keep the exact GEMM, as do the output head and MoE routers (keep_prefill_exact); LMLAB_DENSE_FAST_MIN_WEIGHTS=N
// moves the bound (tests use 0 to reach the integer GEMM on the fixtures' small matrices). The GEMM starts at 64
// prompt rows per call, so a short prompt batched with others (or prefilled in a different chunk size) may take it
// or not: its logits then differ at the kernel's ~1e-3 level, not more.
#include <fmt/format.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>

#include "kernels/kernels.h"
#include "lmlab/error.h"
#include "weights/fast_path_bound.h"
#include "weights/linear.h"
#include "util/half.h"
#include "util/weight_buffer.h"

namespace lmlab {

namespace {

constexpr int64_t kInt16PrefillMinWeights = int64_t{1} << 20;

class DenseLinear final : public Linear {
 public:
  DenseLinear(int64_t out, int64_t in, kernels::WeightType type, const uint8_t* w, std::vector<float> bias)
      : Linear(out, in),
        type_(type),
        w_(w),
        bias_(std::move(bias)),
        int16_prefill_(type != kernels::WeightType::f32 &&
                       out * in >= fast_path_min_weights("LMLAB_DENSE_FAST_MIN_WEIGHTS", kInt16PrefillMinWeights)) {}

  void forward(const float* x, float* y, int64_t n) const override { multiply(x, y, n, int16_prefill_); }
  void keep_prefill_exact() override { int16_prefill_ = false; }
  // Decode rows stay exact however many are batched: a row gets what it would get decoded alone, within f32 rounding.
  void forward_decode(const float* x, float* y, int64_t n) const override { multiply(x, y, n, false); }

  void multiply(const float* x, float* y, int64_t n, bool int16_prefill) const {
    kernels::matmul({type_, bytes(), out_, in_, x, y, n, int16_prefill});
    if (!bias_.empty())
      for (int64_t t = 0; t < n; ++t)
        for (int64_t r = 0; r < out_; ++r) y[t * out_ + r] += bias_[r];
  }

  void dequantize_row(int64_t r, float* out) const override {
    const int64_t base = r * in_;
    const uint8_t* w = bytes();  // the copy once there is one: the mapped pages were let go
    switch (type_) {
      case kernels::WeightType::f32:
        for (int64_t i = 0; i < in_; ++i) out[i] = reinterpret_cast<const float*>(w)[base + i];
        break;
      case kernels::WeightType::f16:
        for (int64_t i = 0; i < in_; ++i) out[i] = f16_to_f32(reinterpret_cast<const uint16_t*>(w)[base + i]);
        break;
      case kernels::WeightType::bf16:
        for (int64_t i = 0; i < in_; ++i) out[i] = bf16_to_f32(reinterpret_cast<const uint16_t*>(w)[base + i]);
        break;
    }
  }

  // Matrices under one huge page stay in place (nothing to gain).
  void prepare_decode() const override {
    static const bool on = [] {
      const char* e = std::getenv("LMLAB_DENSE_HUGEPAGES");
      return !e || std::strcmp(e, "0") != 0;
    }();
    const uint64_t bytes = weight_bytes();
    if (!on || bytes < kHugePageBytes) return;
    // The CPU backend prepares its matrices one per pool thread: each copy is one thread's.
    std::call_once(copied_, [&] {
      WeightBuffer copy = allocate_weight_buffer(bytes);
      std::memcpy(copy.get(), w_, bytes);
      copy_ = std::move(copy);
    });
  }
  void drop_stored_pages(const WeightStore& store) const override {
    if (copy_) store.drop_pages(w_, weight_bytes());
  }

  // What forward and dequantize_row read.
  const uint8_t* bytes() const { return copy_ ? copy_.get() : w_; }

  uint64_t weight_bytes() const override {
    return static_cast<uint64_t>(out_ * in_) * (type_ == kernels::WeightType::f32 ? 4 : 2);
  }
  StoredWeight stored() const override { return {.type = type_, .dense = w_, .bias = &bias_}; }
  std::string format() const override {
    return type_ == kernels::WeightType::f32 ? "f32" : type_ == kernels::WeightType::f16 ? "f16" : "bf16";
  }

 private:
  kernels::WeightType type_;
  const uint8_t* w_;  // [out, in]
  std::vector<float> bias_;
  bool int16_prefill_;  // prefill may take the int16 GEMM (large bf16 / f16 matrices)
  mutable std::once_flag copied_;
  mutable WeightBuffer copy_;
};

}  // namespace

std::unique_ptr<Linear> make_dense_linear(int64_t out, int64_t in, kernels::WeightType type, const uint8_t* w,
                                          std::vector<float> bias) {
  return std::make_unique<DenseLinear>(out, in, type, w, std::move(bias));
}

}  // namespace lmlab
