// MLX affine-quantized Linear: `<prefix>.weight` U32 [out, in * bits / 32] (bits packed along the input
// dimension, first value in the lowest bits), `<prefix>.scales` and `<prefix>.biases` [out, in / group_size]
// in bf16 / f16 / f32; stacked experts carry a leading [n_experts] axis on all three and `expert` picks one
// slice. The tensors are used in place (mapped, or an expert buffer); their checks are make_linear_from_bytes's
// (linear_view.cpp). Decode-sized calls (n <= kIntegerMaxTokens; any n for a 4-bit matrix repacked into panels)
// of 4- and 8-bit matrices of at least kIntegerMinWeights take an integer-dot kernel: 4-bit ones the int8-activation kernel (kernels/matmul_affine_i8.h,
// whose cost per extra token is small: batched decode), 8-bit ones the int16 kernel (kernels/matmul_affine_i16.h;
// LMLAB_INT8_DOT=0 sends 4-bit ones there too); prefill of 4- and 8-bit matrices of at least kGemmMinWeights from
// kAffineBf16MinTokens up the vdpbf16ps GEMM where the CPU has it (kernels/cpu/matmul_affine_bf16.h: exact levels,
// x kept to 2^-16); other widths the fused f32 kernel (kernels/matmul_affine.h), whose dequantized tiles are
// reused across tokens and which keeps prefill logits and perplexity at f32 accuracy.
// Resident matrices (load_linear's, not streamed experts') that take the int8 kernel are repacked into 16-row
// panels (kernels/affine_panels.h) when the CPU backend prepares them at load (prepare_decode: every matrix but the
// MoE experts); one never prepared keeps the row-layout kernel, so a model run on another backend never pays for it.
// A prepared matrix decodes and prefills from its panels only; its mapped bytes stay for dequantize_row and stored()
// and leave memory through drop_stored_pages (docs/quantization.md). Streamed experts keep the row-layout kernel:
// they are read at runtime and a repack per read would be a second copy of it.
#include <fmt/format.h>

#include <cstdlib>
#include <mutex>

#include "kernels/cpu/matmul_affine_bf16.h"
#include "kernels/matmul_affine.h"
#include "kernels/matmul_affine_i16.h"
#include "kernels/matmul_affine_i8.h"
#include "lmlab/error.h"
#include "weights/fast_path_bound.h"
#include "weights/linear.h"

namespace lmlab {

namespace {

constexpr int64_t kIntegerMaxTokens = 4;  // the integer kernel's widest token tile
// Below this many weights the matrix stays in cache and the f32 kernel is not bound by reading it, while the
// integer kernel pays a per-call quantize-and-pack of the activations: on coder-moe-sparse-4bit (experts of 128 x
// 256) the integer path made decode 25% slower than the f32 one.
constexpr int64_t kIntegerMinWeights = int64_t{1} << 20;
// Prefill takes the vdpbf16ps GEMM on matrices of at least this many weights. Below, the f32 kernel stays: on
// coder-moe-sparse-4bit (every matrix under 64K weights) the GEMM's x ~ hi + lo (2^-16) moves one eval token's NLL
// by 0.21 against HF's f32 (the golden bound is 0.05; the int16 decode activations move the same token as much:
// a routing near-tie), and matrices that stay in cache gain little from it. The 0.9B synth's smallest
// (512 x 2048) is at the bound.
constexpr int64_t kGemmMinWeights = int64_t{1} << 20;

// LMLAB_AFFINE_FAST_MIN_WEIGHTS=N puts both bounds at N: the fixtures' 4-bit matrices are all under 2^20 weights but
// one, so their golden tests reach the integer and GEMM kernels end to end only this way (golden_quant_test.cpp).
constexpr const char* kFastMinWeightsEnv = "LMLAB_AFFINE_FAST_MIN_WEIGHTS";

class AffineLinear final : public Linear {
 public:
  AffineLinear(const kernels::AffineWeight& w, std::vector<float> bias, bool resident)
      : Linear(w.rows, w.cols),
        w_(w),
        integer_(kernels::affine_i16_supported(w) && w.rows * w.cols >= fast_path_min_weights(kFastMinWeightsEnv, kIntegerMinWeights)),
        gemm_(kernels::cpu::matmul_affine_bf16_supported(w) && w.rows * w.cols >= fast_path_min_weights(kFastMinWeightsEnv, kGemmMinWeights)),
        bias_(std::move(bias)),
        repack_(resident && integer_ && int8_ && kernels::affine_panels_enabled()) {}

  // Prefill of a matrix with panels (prepared at load) takes the panel kernel at any token count: two vpdpbusd per
  // 64 multiply-adds against the bf16 GEMM's two vdpbf16ps per 32 (0.5 GB 4-bit synth, 512-token prefill: 217-220
  // vs 139-141 tok/s), and each prompt row's bits are the decode kernel's.
  void forward(const float* x, float* y, int64_t n) const override {
    multiply(x, y, n, integer_ && (n <= kIntegerMaxTokens || panels_.data), /*prefill=*/true);
  }
  // Decode rows keep the integer kernel at any count: it treats tokens independently, so a batched decode row
  // equals the same row decoded alone, and it reads the weights once for all of them.
  // Not the prefill GEMM either, for the same reason.
  void forward_decode(const float* x, float* y, int64_t n) const override { multiply(x, y, n, integer_, false); }

  void prepare_decode() const override {
    if (repack_) std::call_once(repacked_, [this] { panels_ = kernels::repack_affine_panels(w_); });
  }

  // Decode and prefill read panels_ only, so the mapped words, scales and biases can leave memory (the panels were a
  // second copy of them: max RSS 1036 vs 552 MB on the 0.5 GB 4-bit synth).
  void drop_stored_pages(const WeightStore& store) const override {
    if (!panels_.data) return;
    const uint64_t groups = static_cast<uint64_t>(w_.rows * (w_.cols / w_.group_size));
    const uint64_t scale_bytes = groups * (w_.scale_type == kernels::ScaleType::f32 ? 4 : 2);
    store.drop_pages(w_.packed, static_cast<uint64_t>(w_.rows * w_.cols * w_.bits / 8));
    store.drop_pages(w_.scales, scale_bytes);
    store.drop_pages(w_.biases, scale_bytes);
  }

  void dequantize_row(int64_t r, float* out) const override { kernels::ref::dequantize_affine_row(w_, r, out); }

  uint64_t weight_bytes() const override { return w_.bytes(); }
  std::string format() const override { return fmt::format("q{}g{}", w_.bits, w_.group_size); }
  StoredWeight stored() const override { return {.affine = true, .quant = w_, .bias = &bias_}; }

 private:
  void multiply(const float* x, float* y, int64_t n, bool integer, bool prefill) const {
    const kernels::MatmulAffineArgs a{w_, x, y, n};
    if (integer && int8_ && panels_.data) {  // prepared at load, before any concurrent call
      kernels::cpu::matmul_affine_int8_panels(panels_, x, y, n);
    } else if (integer && int8_) kernels::cpu::matmul_affine_int8(a);
    else if (integer) kernels::matmul_affine_int(a);
    else if (prefill && gemm_ && kernels::cpu::matmul_affine_uses_bf16_gemm(a)) kernels::cpu::matmul_affine_bf16(a);
    else kernels::matmul_affine(a);
    if (!bias_.empty())
      for (int64_t t = 0; t < n; ++t)
        for (int64_t r = 0; r < out_; ++r) y[t * out_ + r] += bias_[r];
  }

  kernels::AffineWeight w_;
  bool integer_;  // 4 / 8 bits and at least kIntegerMinWeights: integer dots
  bool gemm_;     // 4 / 8 bits and at least kGemmMinWeights: prefill on the vdpbf16ps GEMM where the CPU has it
  bool int8_ = kernels::affine_i8_supported(w_) && kernels::int8_dot_enabled();  // 4 bits: int8 activations
  std::vector<float> bias_;
  bool repack_;  // resident 4-bit weight on the int8 kernel: decode reads panels_
  mutable std::once_flag repacked_;
  mutable kernels::AffinePanels panels_;  // built by prepare_decode (once, at load); empty: the row layout
};

}  // namespace

std::unique_ptr<Linear> make_affine_linear(const kernels::AffineWeight& w, std::vector<float> bias, bool resident) {
  return std::make_unique<AffineLinear>(w, std::move(bias), resident);
}

}  // namespace lmlab
