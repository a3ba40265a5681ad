// Streaming safetensors writer: the header (all names, dtypes, shapes) is declared up front, then tensor
// data is written in declaration order, so a multi-GB model never needs a whole-model buffer.
#pragma once

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "lmlab/safetensors.h"

namespace lmlab {

struct TensorDecl {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  uint64_t nbytes() const;
};

class SafetensorsWriter {
 public:
  SafetensorsWriter(const std::filesystem::path& path, std::vector<TensorDecl> tensors,
                    const std::map<std::string, std::string>& metadata = {});
  ~SafetensorsWriter();
  SafetensorsWriter(const SafetensorsWriter&) = delete;
  SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;

  // Appends bytes of the current tensor; a tensor may be written in several pieces.
  void write(std::span<const uint8_t> bytes);
  // Checks every declared byte was written and closes the file.
  void finish();

 private:
  std::filesystem::path path_;
  std::FILE* f_ = nullptr;
  std::vector<TensorDecl> tensors_;
  size_t current_ = 0;
  uint64_t written_in_current_ = 0;
};

}  // namespace lmlab
