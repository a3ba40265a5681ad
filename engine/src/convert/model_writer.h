// Streaming writer of a sharded Hugging Face weight directory: tensors are declared up front (so every shard's
// header can be written first), then their bytes are appended in declaration order. Shards are filled greedily
// up to `shard_bytes` of tensor data (a larger tensor gets a shard of its own); one shard is named
// model.safetensors, several model-0000i-of-0000N.safetensors; model.safetensors.index.json
// ({"metadata": {"total_size"}, "weight_map"}) is always written. Never holds more than the caller's piece.
#pragma once

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "lmlab/convert.h"
#include "lmlab/safetensors_writer.h"

namespace lmlab {

class ShardedModelWriter {
 public:
  ShardedModelWriter(const std::filesystem::path& dir, std::vector<TensorDecl> tensors, uint64_t shard_bytes,
                     std::map<std::string, std::string> metadata, WriteProgressFn progress);
  ~ShardedModelWriter();

  // Appends bytes of the current tensor (pieces of any size, in declaration order).
  void write(std::span<const uint8_t> bytes);
  template <typename T>
  void write_values(std::span<const T> v) {
    write({reinterpret_cast<const uint8_t*>(v.data()), v.size_bytes()});
  }
  // Checks everything was written, closes the last shard and writes the index.
  void finish();

  int shard_count() const { return static_cast<int>(shard_names_.size()); }
  uint64_t total_bytes() const { return total_; }

 private:
  void open_shard(size_t shard);
  void report(bool force);

  std::filesystem::path dir_;
  std::vector<TensorDecl> tensors_;
  std::vector<size_t> shard_of_;          // tensor -> shard
  std::vector<std::string> shard_names_;
  std::vector<size_t> shard_first_;       // shard -> first tensor
  std::map<std::string, std::string> metadata_;
  WriteProgressFn progress_;
  std::unique_ptr<SafetensorsWriter> writer_;
  size_t shard_ = 0, tensor_ = 0;
  uint64_t in_tensor_ = 0, done_ = 0, total_ = 0, reported_ = 0;
  std::chrono::steady_clock::time_point start_, last_report_;
};

// Copies the files of a model directory that are not weights or config (tokenizer.json, tokenizer_config.json,
// generation_config.json, chat templates, ...) into `to`.
void copy_model_side_files(const std::filesystem::path& from, const std::filesystem::path& to);

// Creates `dir` (and parents); an existing non-empty directory is an error naming `what` (the CLI flag).
void prepare_output_dir(const std::filesystem::path& dir, const std::string& what);

// Writes JSON text to a file, throwing an io Error naming it on failure.
void write_text_file(const std::filesystem::path& path, const std::string& text);

}  // namespace lmlab
