// Linear: every matmul of a model goes through this interface, so architecture code never branches on
// the weight format. Implementations: dense f32/f16/bf16 (zero-copy views of the mapped safetensors) and,
// in linear_affine.cpp, MLX affine-quantized weights.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kernels/kernels.h"
#include "kernels/matmul_affine.h"
#include "lmlab/safetensors.h"

namespace lmlab {

// MLX affine quantization parameters of one weight (config.json "quantization", with per-layer overrides).
struct QuantSpec {
  int bits = 0;  // 0 = not quantized
  int group_size = 0;
};

// A Linear's weight as stored (views of the mapped file), for backends that upload it unchanged.
struct StoredWeight {
  bool affine = false;
  kernels::WeightType type = kernels::WeightType::f32;  // dense: the element type of `dense`
  const uint8_t* dense = nullptr;                       // dense: [out, in]
  kernels::AffineWeight quant{};                        // affine: packed words, scales, biases
  const std::vector<float>* bias = nullptr;             // [out], or empty
};

class Linear {
 public:
  Linear(int64_t out_features, int64_t in_features) : out_(out_features), in_(in_features) {}
  virtual ~Linear() = default;

  int64_t out_features() const { return out_; }
  int64_t in_features() const { return in_; }

  // y[n, out] = x[n, in] . W[out, in]^T (+ bias)
  virtual void forward(const float* x, float* y, int64_t n) const = 0;
  // The same product over n rows that are each one sequence's decode token (a batched decode step): computed
  // by the kernel a single decode token takes, so that a row batched with others gets what it gets alone
  // (bit for bit where that kernel treats tokens independently, as the integer affine kernel does).
  virtual void forward_decode(const float* x, float* y, int64_t n) const { forward(x, y, n); }
  // Lays the weight out for the CPU integer kernel (4-bit affine: 16-row panels; linear_affine.cpp), which decode
  // and prefill then read. Called at load, before any forward (the CPU backend, on every resident matrix but MoE
  // experts); idempotent. A Linear never prepared computes on the stored layout.
  virtual void prepare_decode() const {}
  // After prepare_decode, for a weight that then computes from its own copy (4-bit panels): lets the OS drop the
  // stored bytes' pages in `store`'s mapping (dequantize_row and stored() still read them; they fault back in from
  // the file). Nothing for other weights, or bytes outside the store.
  virtual void drop_stored_pages(const WeightStore& /*store*/) const {}
  // This matrix's outputs are used as they are (logits, which sampling, logprobs and perplexity read) or decide
  // discretely (MoE routers): its prefill keeps the exact kernels where a large matrix would take a faster, slightly
  // less exact one (dense bf16 / f16: the int16 GEMM, kernels/cpu/matmul_half_i16.h). Called at load, before any forward.
  virtual void keep_prefill_exact() {}
  // Row r of W as f32 [in]: embedding lookup through a (possibly tied, possibly quantized) matrix.
  virtual void dequantize_row(int64_t r, float* out) const = 0;
  virtual uint64_t weight_bytes() const = 0;
  virtual std::string format() const = 0;  // "bf16", "q4g64", ...
  virtual StoredWeight stored() const = 0;

 protected:
  int64_t out_, in_;
};

// Loads `prefix + ".weight"` (and ".bias"; ".scales"/".biases" when quantized) with shape [out, in].
// When the weight is stacked over experts ([n_experts, out, in]), `expert` selects one slice.
std::unique_ptr<Linear> load_linear(const WeightStore& store, const std::string& prefix, int64_t out, int64_t in,
                                    const QuantSpec& quant, int64_t expert = -1);

// The two Linear implementations over bytes owned elsewhere (the mapped file, or a streamed expert's buffer):
// w [out, in] dense f32/f16/bf16, or an MLX affine weight (kernels/matmul_affine.h). bias: [out] or empty.
std::unique_ptr<Linear> make_dense_linear(int64_t out, int64_t in, kernels::WeightType type, const uint8_t* w,
                                          std::vector<float> bias);
// resident: the bytes live as long as the model (the mapped file), so decode may repack them into panels once;
// false for streamed experts.
std::unique_ptr<Linear> make_affine_linear(const kernels::AffineWeight& w, std::vector<float> bias,
                                           bool resident = false);

// A small vector (norm weight, bias) as f32, plus `offset` (gemma's (1 + w)), checked to have `n` values.
std::vector<float> load_vector_f32(const WeightStore& store, const std::string& name, int64_t n, float offset = 0.0f);

}  // namespace lmlab
