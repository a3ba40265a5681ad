// `lmlab convert`: a bf16 / f16 / f32 Hugging Face model -> an MLX affine-quantized model (the format of the
// mlx-community checkpoints), streamed tensor by tensor. The output has the tensor names, layout and config
// keys mlx-lm writes: every Linear and Embedding weight whose input size is a multiple of the group size
// becomes `<name>.weight` U32 + `<name>.scales` + `<name>.biases` (dtype of the source: bf16, or f16 for
// f16 sources); norms and other vectors are copied unchanged; per-expert MoE weights of qwen3_moe are
// stacked into `mlp.switch_mlp.<proj>` [n_experts, ...]; MoE routers get `router_bits` (8, as mlx-lm's
// quant_predicate) and embeddings `embedding_bits` when set; config.json gains "quantization" and "quantization_config" {group_size, bits, and the
// per-layer overrides}; the safetensors metadata says {"format": "mlx"}; tokenizer and other files are copied.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>

namespace lmlab {

// Progress of a streaming model write (convert, synth): tensor bytes written so far out of the total.
struct WriteProgress {
  uint64_t bytes_done = 0, bytes_total = 0;
  double seconds = 0.0;  // since the write started
  std::string tensor;    // the tensor being written
};
using WriteProgressFn = std::function<void(const WriteProgress&)>;

// How each group's scale and bias are chosen (the output format is the same): minmax is MLX's classic
// (max - min) / (2^bits - 1) and min; mse searches for the fit with the least squared error (slower; at 4
// bits it keeps much more of the model's quality). See engine/src/convert/quantize.h.
enum class QuantFit { minmax, mse };

struct ConvertOptions {
  int bits = 4;         // 2, 3, 4, 6 or 8
  int group_size = 64;  // 32, 64 or 128
  int router_bits = 8;  // MoE router (mlp.gate, block_sparse_moe.gate); 0 = same as bits
  int embedding_bits = 0;  // model.embed_tokens and lm_head (as mlx-lm's mixed recipes); 0 = same as bits
  QuantFit fit = QuantFit::mse;
  uint64_t shard_bytes = uint64_t{5000} << 20;  // tensor bytes per shard (a larger tensor gets its own)
  WriteProgressFn progress;
};

struct ConvertResult {
  uint64_t bytes_read = 0;     // input tensor bytes (bf16 / f16 / f32 as stored)
  uint64_t bytes_written = 0;  // output tensor bytes (packed weights, scales, biases, copied tensors)
  int64_t tensors_quantized = 0, tensors_copied = 0;
  int shards = 0;
};

// Throws lmlab::Error naming the file / tensor / option on a problem (e.g. an already quantized input, or an
// output directory that exists and is not empty).
ConvertResult convert_model(const std::filesystem::path& in_dir, const std::filesystem::path& out_dir,
                            const ConvertOptions& options);

}  // namespace lmlab
