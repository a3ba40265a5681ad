#include "lmlab/safetensors_writer.h"

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "lmlab/error.h"

namespace lmlab {

uint64_t TensorDecl::nbytes() const {
  uint64_t n = dtype_size(dtype);
  for (int64_t d : shape) n *= static_cast<uint64_t>(d);
  return n;
}

SafetensorsWriter::SafetensorsWriter(const std::filesystem::path& path, std::vector<TensorDecl> tensors,
                                     const std::map<std::string, std::string>& metadata)
    : path_(path), tensors_(std::move(tensors)) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t off = 0;
  for (const auto& t : tensors_) {
    header[t.name] = {{"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {off, off + t.nbytes()}}};
    off += t.nbytes();
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // data block 8-byte aligned, as the reference writer does
  f_ = std::fopen(path.c_str(), "wb");
  if (!f_) throw Error(ErrorKind::io, path.string(), fmt::format("cannot create: {}", std::strerror(errno)));
  const uint64_t len = text.size();
  if (std::fwrite(&len, 8, 1, f_) != 1 || std::fwrite(text.data(), 1, text.size(), f_) != text.size())
    throw Error(ErrorKind::io, path.string(), "write failed");
  while (current_ < tensors_.size() && tensors_[current_].nbytes() == 0) ++current_;
}

SafetensorsWriter::~SafetensorsWriter() {
  if (f_) std::fclose(f_);
}

void SafetensorsWriter::write(std::span<const uint8_t> bytes) {
  while (!bytes.empty()) {
    if (current_ >= tensors_.size())
      throw Error(ErrorKind::internal, path_.string(), "more bytes written than the declared tensors hold");
    const uint64_t room = tensors_[current_].nbytes() - written_in_current_;
    const size_t n = static_cast<size_t>(std::min<uint64_t>(room, bytes.size()));
    if (std::fwrite(bytes.data(), 1, n, f_) != n)
      throw Error(ErrorKind::io, path_.string(), fmt::format("write failed: {}", std::strerror(errno)));
    bytes = bytes.subspan(n);
    written_in_current_ += n;
    while (current_ < tensors_.size() && written_in_current_ == tensors_[current_].nbytes()) {
      ++current_;
      written_in_current_ = 0;
    }
  }
}

void SafetensorsWriter::finish() {
  if (current_ != tensors_.size())
    throw Error(ErrorKind::internal, path_.string(),
                fmt::format("tensor '{}' was not completely written", tensors_[current_].name));
  if (std::fclose(f_) != 0) {
    f_ = nullptr;
    throw Error(ErrorKind::io, path_.string(), "close failed");
  }
  f_ = nullptr;
}

}  // namespace lmlab
