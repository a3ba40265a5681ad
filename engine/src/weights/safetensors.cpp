// Safetensors parsing and validation. Format: u64 little-endian header length N, N bytes of JSON
// {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}, then the data block;
// offsets are relative to the data block.
#include "lmlab/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <fstream>
#include <nlohmann/json.hpp>

#include "lmlab/error.h"
#include "util/file_read.h"

namespace lmlab {

namespace {

struct DTypeInfo {
  DType type;
  std::string_view name;
  size_t size;
};
constexpr DTypeInfo kDTypes[] = {
    {DType::f64, "F64", 8}, {DType::f32, "F32", 4}, {DType::f16, "F16", 2},  {DType::bf16, "BF16", 2},
    {DType::i64, "I64", 8}, {DType::i32, "I32", 4}, {DType::i16, "I16", 2},  {DType::i8, "I8", 1},
    {DType::u64, "U64", 8}, {DType::u32, "U32", 4}, {DType::u16, "U16", 2},  {DType::u8, "U8", 1},
    {DType::boolean, "BOOL", 1},
};

constexpr uint64_t kMaxHeaderBytes = 100ull << 20;  // the format's own limit

Error format_error(const std::filesystem::path& path, const std::string& tensor, const std::string& msg) {
  std::string where = path.string();
  if (!tensor.empty()) where += ": tensor '" + tensor + "'";
  return Error(ErrorKind::model_format, where, msg);
}

}  // namespace

size_t dtype_size(DType t) { return kDTypes[static_cast<int>(t)].size; }
std::string_view dtype_name(DType t) { return kDTypes[static_cast<int>(t)].name; }

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

SafetensorsFile::SafetensorsFile(const std::filesystem::path& path) : path_(path) {
  const int fd = open_regular_file(path);  // a FIFO named model.safetensors must not block the load
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    throw Error(ErrorKind::io, path.string(), fmt::format("cannot stat: {}", std::strerror(errno)));
  }
  size_ = static_cast<uint64_t>(st.st_size);
  if (size_ < 8) {
    ::close(fd);
    throw format_error(path, "", fmt::format("file is {} bytes, too short for the 8-byte header length", size_));
  }
  void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (p == MAP_FAILED) throw Error(ErrorKind::io, path.string(), fmt::format("mmap failed: {}", std::strerror(errno)));
  base_ = static_cast<const uint8_t*>(p);

  try {
    uint64_t header_len;
    std::memcpy(&header_len, base_, 8);
    if (header_len > kMaxHeaderBytes || header_len > size_ - 8)
      throw format_error(path, "", fmt::format("header length {} exceeds the file ({} bytes) or the 100 MiB limit",
                                               header_len, size_));
    const uint64_t data_begin = 8 + header_len, data_bytes = size_ - data_begin;
    nlohmann::json header;
    try {
      header = nlohmann::json::parse(base_ + 8, base_ + data_begin);
    } catch (const nlohmann::json::exception& e) {
      throw format_error(path, "", fmt::format("header is not valid JSON: {}", e.what()));
    }
    if (!header.is_object()) throw format_error(path, "", "header is not a JSON object");

    for (auto it = header.begin(); it != header.end(); ++it) {
      const std::string& name = it.key();
      const auto& v = it.value();
      if (name == "__metadata__") {
        if (!v.is_object()) throw format_error(path, "", "__metadata__ is not an object");
        for (auto m = v.begin(); m != v.end(); ++m)
          if (m.value().is_string()) metadata_[m.key()] = m.value().get<std::string>();
        continue;
      }
      if (!v.is_object()) throw format_error(path, name, "entry is not an object");
      auto dt = v.find("dtype");
      auto sh = v.find("shape");
      auto off = v.find("data_offsets");
      if (dt == v.end() || !dt->is_string()) throw format_error(path, name, "missing or non-string 'dtype'");
      if (sh == v.end() || !sh->is_array()) throw format_error(path, name, "missing or non-array 'shape'");
      if (off == v.end() || !off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() ||
          !(*off)[1].is_number_unsigned())
        throw format_error(path, name, "'data_offsets' must be two non-negative integers");
      TensorInfo t;
      t.name = name;
      const std::string dts = dt->get<std::string>();
      auto d = std::find_if(std::begin(kDTypes), std::end(kDTypes), [&](const DTypeInfo& i) { return i.name == dts; });
      if (d == std::end(kDTypes)) throw format_error(path, name, fmt::format("unknown dtype '{}'", dts));
      t.dtype = d->type;
      unsigned __int128 numel = 1;
      for (const auto& s : *sh) {
        if (!s.is_number_unsigned()) throw format_error(path, name, "shape entries must be non-negative integers");
        t.shape.push_back(s.get<int64_t>());
        numel *= static_cast<uint64_t>(t.shape.back());
        if (numel > (static_cast<unsigned __int128>(1) << 62))
          throw format_error(path, name, "shape is absurdly large");
      }
      const uint64_t begin = (*off)[0].get<uint64_t>(), end = (*off)[1].get<uint64_t>();
      if (end < begin) throw format_error(path, name, fmt::format("data_offsets [{}, {}] are reversed", begin, end));
      if (end > data_bytes)
        throw format_error(path, name,
                           fmt::format("data_offsets end {} is past the data block ({} bytes): file truncated?", end,
                                       data_bytes));
      // In 128 bits: numel (< 2^62) times the element size may wrap a uint64_t to 0.
      const unsigned __int128 expect = numel * d->size;
      if (static_cast<unsigned __int128>(end - begin) != expect)
        throw format_error(path, name,
                           fmt::format("holds {} bytes but shape x {} needs {}", end - begin, dts, expect));
      t.offset = data_begin + begin;
      t.nbytes = end - begin;
      tensors_.push_back(std::move(t));
    }
    // No overlap: sort by offset and check neighbours.
    std::vector<const TensorInfo*> by_off;
    for (const auto& t : tensors_) by_off.push_back(&t);
    std::sort(by_off.begin(), by_off.end(), [](auto* a, auto* b) { return a->offset < b->offset; });
    for (size_t i = 1; i < by_off.size(); ++i)
      if (by_off[i]->offset < by_off[i - 1]->offset + by_off[i - 1]->nbytes)
        throw format_error(path, by_off[i]->name, fmt::format("overlaps tensor '{}'", by_off[i - 1]->name));
    for (size_t i = 0; i < tensors_.size(); ++i) index_.emplace(tensors_[i].name, i);
  } catch (...) {
    ::munmap(const_cast<uint8_t*>(base_), size_);
    throw;
  }
}

SafetensorsFile::~SafetensorsFile() {
  if (base_) ::munmap(const_cast<uint8_t*>(base_), size_);
}

const TensorInfo* SafetensorsFile::find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

WeightStore WeightStore::open_dir(const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  WeightStore ws;
  ws.dir_ = dir;
  std::vector<fs::path> shards;
  const fs::path index = dir / "model.safetensors.index.json";
  if (fs::exists(index)) {
    const std::string text = read_regular_file(index, uint64_t{64} << 20);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
      throw Error(ErrorKind::model_format, index.string(), fmt::format("not valid JSON: {}", e.what()));
    }
    if (!j.contains("weight_map") || !j["weight_map"].is_object())
      throw Error(ErrorKind::model_format, index.string(), "missing object 'weight_map'");
    std::vector<std::string> names;
    for (auto& [tensor, file] : j["weight_map"].items()) {
      if (!file.is_string()) throw Error(ErrorKind::model_format, index.string(), "weight_map values must be file names");
      // Shards live in the model directory: no absolute paths, no climbing out with "..".
      const fs::path shard(file.get<std::string>());
      const bool escapes = shard.empty() || shard.is_absolute() || shard.has_root_path() ||
                           std::any_of(shard.begin(), shard.end(), [](const fs::path& part) { return part == ".."; });
      if (escapes)
        throw Error(ErrorKind::model_format, index.string(),
                    fmt::format("weight_map['{}'] = '{}' is not a file inside the model directory", tensor,
                                shard.string()));
      names.push_back(shard.string());
    }
    std::sort(names.begin(), names.end());
    names.erase(std::unique(names.begin(), names.end()), names.end());
    for (auto& n : names) shards.push_back(dir / n);
  } else if (fs::exists(dir / "model.safetensors")) {
    shards.push_back(dir / "model.safetensors");
  } else {
    if (!fs::is_directory(dir)) throw Error(ErrorKind::io, dir.string(), "model directory does not exist");
    for (auto& e : fs::directory_iterator(dir))
      if (e.path().extension() == ".safetensors") shards.push_back(e.path());
    std::sort(shards.begin(), shards.end());
  }
  if (shards.empty()) throw Error(ErrorKind::model_format, dir.string(), "no .safetensors files found");
  for (auto& s : shards) {
    ws.files_.push_back(std::make_unique<SafetensorsFile>(s));
    const auto& f = *ws.files_.back();
    for (const auto& t : f.tensors()) {
      auto [it, inserted] = ws.by_name_.emplace(t.name, TensorRef{&t, &f});
      if (!inserted)
        throw Error(ErrorKind::model_format, s.string(),
                    fmt::format("tensor '{}' also appears in {}", t.name, it->second.file->path().string()));
    }
  }
  return ws;
}

TensorRef WeightStore::find(std::string_view name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? TensorRef{} : it->second;
}

TensorRef WeightStore::require(std::string_view name) const {
  TensorRef r = find(name);
  if (!r) throw Error(ErrorKind::model_format, dir_.string(), fmt::format("missing tensor '{}'", name));
  return r;
}

TensorRef WeightStore::require(std::string_view name, std::span<const int64_t> shape) const {
  TensorRef r = require(name);
  if (!std::equal(shape.begin(), shape.end(), r.info->shape.begin(), r.info->shape.end()))
    throw Error(ErrorKind::model_format, r.file->path().string() + ": tensor '" + std::string(name) + "'",
                fmt::format("shape [{}] but the config implies [{}]", fmt::join(r.info->shape, ", "),
                            fmt::join(shape, ", ")));
  return r;
}

std::vector<std::string> WeightStore::names() const {
  std::vector<std::string> out;
  for (auto& [n, r] : by_name_) out.push_back(n);
  return out;
}

uint64_t WeightStore::total_bytes() const {
  uint64_t b = 0;
  for (auto& f : files_) b += f->file_bytes();
  return b;
}

bool WeightStore::drop_pages(const void* p, uint64_t n) const {
  for (const auto& f : files_)
    if (f->drop_pages(p, n)) return true;
  return false;
}

bool SafetensorsFile::drop_pages(const void* p, uint64_t n) const {
  const auto* b = static_cast<const uint8_t*>(p);
  if (b < base_ || n > size_ || static_cast<uint64_t>(b - base_) > size_ - n) return false;
  const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t lo = (reinterpret_cast<uintptr_t>(b) + page - 1) / page * page;
  const uintptr_t hi = (reinterpret_cast<uintptr_t>(b) + n) / page * page;
  if (hi > lo) ::madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_DONTNEED);  // advice: a failure loses nothing
  return true;
}

}  // namespace lmlab
