// Safetensors reading: memory-mapped files (single or sharded through model.safetensors.index.json) with
// a fully validated header. A corrupt or truncated file fails at open with an Error naming file and tensor.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace lmlab {

enum class DType { f64, f32, f16, bf16, i64, i32, i16, i8, u64, u32, u16, u8, boolean };

size_t dtype_size(DType t);
std::string_view dtype_name(DType t);  // the safetensors spelling: "BF16", "F32", ...

struct TensorInfo {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  uint64_t offset;  // absolute byte offset of the data in the file (after the header)
  uint64_t nbytes;
  int64_t numel() const;
};

// One mapped .safetensors file.
class SafetensorsFile {
 public:
  // Validates: header length within the file, JSON object, known dtypes, integer non-negative shapes,
  // data_offsets in range, size == numel * dtype size, no two tensors overlap.
  explicit SafetensorsFile(const std::filesystem::path& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::filesystem::path& path() const { return path_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* find(std::string_view name) const;
  const uint8_t* data(const TensorInfo& t) const { return base_ + t.offset; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  uint64_t file_bytes() const { return size_; }
  // Lets go of the resident pages of the mapping that lie wholly inside [p, p + n) (madvise MADV_DONTNEED: clean
  // pages of a private read-only file mapping, read again from the file if touched). False, and nothing done, when
  // the range is not inside this file's mapping.
  bool drop_pages(const void* p, uint64_t n) const;

 private:
  std::filesystem::path path_;
  const uint8_t* base_ = nullptr;
  uint64_t size_ = 0;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t, std::less<>> index_;
  std::map<std::string, std::string> metadata_;
};

// A tensor found in a WeightStore: where it lives and a pointer to its mapped bytes.
struct TensorRef {
  const TensorInfo* info = nullptr;
  const SafetensorsFile* file = nullptr;
  const uint8_t* data() const { return file->data(*info); }
  explicit operator bool() const { return info != nullptr; }
};

// All weights of a model directory: model.safetensors, or the shards named by model.safetensors.index.json,
// or every *.safetensors file when there is neither.
class WeightStore {
 public:
  static WeightStore open_dir(const std::filesystem::path& dir);

  TensorRef find(std::string_view name) const;
  // Like find, but throws model_format naming the tensor and the directory when absent.
  TensorRef require(std::string_view name) const;
  // Throws when the tensor's shape differs from `shape`.
  TensorRef require(std::string_view name, std::span<const int64_t> shape) const;
  bool contains(std::string_view name) const { return static_cast<bool>(find(name)); }
  std::vector<std::string> names() const;
  uint64_t total_bytes() const;
  // SafetensorsFile::drop_pages on the file whose mapping holds [p, p + n); false when none does.
  bool drop_pages(const void* p, uint64_t n) const;
  const std::filesystem::path& dir() const { return dir_; }
  const std::vector<std::unique_ptr<SafetensorsFile>>& files() const { return files_; }

 private:
  std::filesystem::path dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, TensorRef, std::less<>> by_name_;
};

}  // namespace lmlab
