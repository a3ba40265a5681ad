// ExpertLayout: where every MoE expert's bytes live in the shard files, found from the safetensors headers
// alone (nothing is read or touched). An expert = its three projections (gate, up, down), each a weight and,
// when MLX-quantized, scales and biases (plus an optional Linear bias). Experts are either per-expert
// tensors ("<experts>.<E>.<proj>.weight") or slices of stacked tensors ("<switch_mlp>.<proj>.weight" with a
// leading expert axis [n_experts, out, in_packed]: expert E's slice is the E-th of n_experts equal parts).
//
// Each expert also gets a read plan: its byte ranges merged where adjacent (per-expert tensors of one expert
// usually sit back to back, so one read), widened to the enclosing 4 KiB-aligned extent that O_DIRECT needs,
// and extents that touch or overlap merged again so that no block is read twice. Tensors are then views
// inside the one buffer the plan fills.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "lmlab/safetensors.h"
#include "weights/linear.h"
#include "config/model_spec.h"

namespace lmlab {

enum class ExpertProj : int { gate = 0, up = 1, down = 2 };
enum class ExpertTensorRole : int { weight = 0, scales = 1, biases = 2, bias = 3 };  // bias: a Linear's + b

// One tensor of one expert (for stacked experts: the expert's slice of the stacked tensor).
struct ExpertTensor {
  std::string name;              // the safetensors tensor name (stacked: the stacked tensor)
  ExpertProj proj;
  ExpertTensorRole role;
  DType dtype;
  std::vector<int64_t> shape;    // this expert's shape (stacked: without the leading expert axis)
  int file = 0;                  // index into ExpertLayout::files()
  uint64_t offset = 0, nbytes = 0;  // absolute in the file
  uint64_t buffer_offset = 0;       // where the read plan puts its first byte in the expert's buffer
};

// One aligned read of a plan: bytes [offset, offset + nbytes) of a file into buffer_offset of the buffer.
// offset, nbytes and buffer_offset are multiples of the alignment; the read may stop early at end of file
// but must deliver at least min_bytes.
struct ExpertRead {
  int file = 0;
  uint64_t offset = 0, nbytes = 0, min_bytes = 0;
  uint64_t buffer_offset = 0;
};

struct ExpertLocation {
  int32_t layer = 0, expert = 0;
  std::vector<ExpertTensor> tensors;  // sorted by (proj, role)
  std::vector<ExpertRead> reads;      // the read plan, sorted by (file, offset)
  uint64_t tensor_bytes = 0;          // sum of the tensors' bytes (what the model needs)
  uint64_t read_bytes = 0;            // sum of the plan's aligned read sizes (what the drive delivers)
  uint64_t buffer_bytes = 0;          // size of the buffer the plan fills (multiple of the alignment)
  QuantSpec quant[3];                 // per projection
  int64_t out[3] = {0, 0, 0}, in[3] = {0, 0, 0};  // per projection: the Linear's [out, in]
  bool stacked = false;

  const ExpertTensor* find(ExpertProj p, ExpertTensorRole r) const;
};

class ExpertLayout {
 public:
  static constexpr uint64_t kAlignment = 4096;

  // Locates every expert of every MoE layer; throws model_format naming the tensor when one is missing or
  // its shape disagrees with the config. `alignment` must be a power of two (tests use other values).
  static ExpertLayout build(const WeightStore& store, const ModelSpec& spec, uint64_t alignment = kAlignment);

  const std::vector<std::filesystem::path>& files() const { return files_; }
  const std::vector<uint64_t>& file_bytes() const { return file_bytes_; }
  int64_t n_layers() const { return n_layers_; }    // all model layers (MoE or not)
  int64_t n_experts() const { return n_experts_; }
  int64_t n_moe_layers() const { return static_cast<int64_t>(moe_layers_.size()); }
  const std::vector<int32_t>& moe_layers() const { return moe_layers_; }  // model layer indices, ascending
  bool is_moe_layer(int32_t layer) const;
  // Position of a MoE layer among the MoE layers (0 .. n_moe_layers - 1); -1 for a dense layer.
  int32_t moe_index(int32_t layer) const;

  // Throws invalid_input for a dense layer or an expert out of range.
  const ExpertLocation& at(int32_t layer, int32_t expert) const;
  const std::vector<ExpertLocation>& all() const { return experts_; }  // [n_moe_layers * n_experts]

  uint64_t total_tensor_bytes() const { return total_tensor_bytes_; }  // every expert's tensor bytes
  uint64_t total_read_bytes() const { return total_read_bytes_; }
  uint64_t max_buffer_bytes() const { return max_buffer_bytes_; }
  uint64_t alignment() const { return alignment_; }

 private:
  std::vector<std::filesystem::path> files_;
  std::vector<uint64_t> file_bytes_;
  int64_t n_layers_ = 0, n_experts_ = 0;
  std::vector<int32_t> moe_layers_;
  std::vector<int32_t> moe_index_;  // [n_layers]
  std::vector<ExpertLocation> experts_;
  uint64_t total_tensor_bytes_ = 0, total_read_bytes_ = 0, max_buffer_bytes_ = 0;
  uint64_t alignment_ = kAlignment;
};

// The read plan for a set of byte ranges (exposed for tests): merges adjacent ranges, widens each to the
// enclosing aligned extent (clamped to the file's aligned end), merges extents that touch or overlap, and
// assigns every tensor its buffer_offset. Fills loc.reads, read_bytes and buffer_bytes.
void plan_expert_reads(ExpertLocation& loc, const std::vector<uint64_t>& file_bytes, uint64_t alignment);

}  // namespace lmlab
