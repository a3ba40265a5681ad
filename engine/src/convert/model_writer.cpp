#include "convert/model_writer.h"

#include <fmt/format.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "lmlab/error.h"

namespace lmlab {

namespace fs = std::filesystem;

ShardedModelWriter::ShardedModelWriter(const fs::path& dir, std::vector<TensorDecl> tensors, uint64_t shard_bytes,
                                       std::map<std::string, std::string> metadata, WriteProgressFn progress)
    : dir_(dir), tensors_(std::move(tensors)), metadata_(std::move(metadata)), progress_(std::move(progress)) {
  if (tensors_.empty()) throw Error(ErrorKind::internal, dir.string(), "no tensors to write");
  // Greedy shard plan over tensor data bytes.
  uint64_t in_shard = 0;
  size_t n_shards = 0;
  for (size_t i = 0; i < tensors_.size(); ++i) {
    const uint64_t b = tensors_[i].nbytes();
    if (n_shards == 0 || (in_shard > 0 && in_shard + b > shard_bytes)) {
      shard_first_.push_back(i);
      ++n_shards;
      in_shard = 0;
    }
    in_shard += b;
    shard_of_.push_back(n_shards - 1);
    total_ += b;
  }
  for (size_t s = 0; s < n_shards; ++s)
    shard_names_.push_back(n_shards == 1 ? "model.safetensors"
                                         : fmt::format("model-{:05d}-of-{:05d}.safetensors", s + 1, n_shards));
  start_ = last_report_ = std::chrono::steady_clock::now();
  open_shard(0);
}

ShardedModelWriter::~ShardedModelWriter() = default;

void ShardedModelWriter::open_shard(size_t shard) {
  const size_t first = shard_first_[shard];
  const size_t end = shard + 1 < shard_first_.size() ? shard_first_[shard + 1] : tensors_.size();
  std::vector<TensorDecl> decls(tensors_.begin() + static_cast<std::ptrdiff_t>(first),
                                tensors_.begin() + static_cast<std::ptrdiff_t>(end));
  writer_ = std::make_unique<SafetensorsWriter>(dir_ / shard_names_[shard], std::move(decls), metadata_);
  shard_ = shard;
}

void ShardedModelWriter::write(std::span<const uint8_t> bytes) {
  while (!bytes.empty()) {
    if (tensor_ >= tensors_.size())
      throw Error(ErrorKind::internal, dir_.string(), "more bytes written than the declared tensors hold");
    if (shard_of_[tensor_] != shard_) {
      writer_->finish();
      open_shard(shard_of_[tensor_]);
    }
    const uint64_t room = tensors_[tensor_].nbytes() - in_tensor_;
    const size_t n = static_cast<size_t>(std::min<uint64_t>(room, bytes.size()));
    writer_->write(bytes.first(n));
    bytes = bytes.subspan(n);
    in_tensor_ += n;
    done_ += n;
    while (tensor_ < tensors_.size() && in_tensor_ == tensors_[tensor_].nbytes()) {
      ++tensor_;
      in_tensor_ = 0;
    }
  }
  report(false);
}

void ShardedModelWriter::report(bool force) {
  if (!progress_) return;
  const auto now = std::chrono::steady_clock::now();
  if (!force && now - last_report_ < std::chrono::milliseconds(200)) return;
  last_report_ = now;
  WriteProgress p;
  p.bytes_done = done_;
  p.bytes_total = total_;
  p.seconds = std::chrono::duration<double>(now - start_).count();
  p.tensor = tensor_ < tensors_.size() ? tensors_[tensor_].name : "";
  progress_(p);
}

void ShardedModelWriter::finish() {
  // Zero-sized tensors at the end are never reached by write(): skip past them.
  while (tensor_ < tensors_.size() && tensors_[tensor_].nbytes() == 0) {
    if (shard_of_[tensor_] != shard_) {
      writer_->finish();
      open_shard(shard_of_[tensor_]);
    }
    ++tensor_;
  }
  if (tensor_ != tensors_.size())
    throw Error(ErrorKind::internal, dir_.string(),
                fmt::format("tensor '{}' was not completely written", tensors_[tensor_].name));
  writer_->finish();
  writer_.reset();
  nlohmann::json index;
  index["metadata"] = {{"total_size", total_}};
  nlohmann::json map = nlohmann::json::object();
  for (size_t i = 0; i < tensors_.size(); ++i) map[tensors_[i].name] = shard_names_[shard_of_[i]];
  index["weight_map"] = map;
  write_text_file(dir_ / "model.safetensors.index.json", index.dump(2) + "\n");
  report(true);
}

void copy_model_side_files(const fs::path& from, const fs::path& to) {
  for (const auto& e : fs::directory_iterator(from)) {
    if (!e.is_regular_file()) continue;
    const std::string name = e.path().filename().string();
    if (name == "config.json" || name == "model.safetensors.index.json" || e.path().extension() == ".safetensors")
      continue;
    std::error_code ec;
    fs::copy_file(e.path(), to / name, fs::copy_options::overwrite_existing, ec);
    if (!ec) fs::permissions(to / name, fs::perms::owner_write, fs::perm_options::add, ec);  // fixtures are read-only
    if (ec) throw Error(ErrorKind::io, (to / name).string(), fmt::format("cannot copy from {}: {}", e.path().string(), ec.message()));
  }
}

void prepare_output_dir(const fs::path& dir, const std::string& what) {
  std::error_code ec;
  if (fs::exists(dir, ec)) {
    if (!fs::is_directory(dir, ec)) throw Error(ErrorKind::invalid_input, what, dir.string() + " is not a directory");
    if (!fs::is_empty(dir, ec))
      throw Error(ErrorKind::invalid_input, what, dir.string() + " exists and is not empty (refusing to overwrite)");
    return;
  }
  fs::create_directories(dir, ec);
  if (ec) throw Error(ErrorKind::io, dir.string(), "cannot create: " + ec.message());
}

void write_text_file(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  if (!out) throw Error(ErrorKind::io, path.string(), "cannot create");
  out << text;
  if (!out.flush()) throw Error(ErrorKind::io, path.string(), "write failed");
}

}  // namespace lmlab
