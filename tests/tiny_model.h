// A tiny random-weight model written by synth into a fresh temporary directory (removed on destruction), by default
// a qwen3 with the fixtures' coder-dense tokenizer and chat template: a real model made by the test, for tests that
// need one to load and serve, not its numbers.
#pragma once

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <string>

#include "fixtures.h"
#include "lmlab/synth.h"

namespace lmlab::test {

class TinyModel {
 public:
  // The default tiny qwen3. `name` becomes the directory's last component (so it can be any byte string).
  explicit TinyModel(const std::string& name = "tiny") : TinyModel(tiny_qwen3(), name) {}
  // Any synth (another architecture, 4-bit, ...) in the same kind of directory.
  TinyModel(const SynthOptions& options, const std::string& name) {
    static std::atomic<int> counter{0};
    root_ = std::filesystem::temp_directory_path() /
            ("lmlab_tiny_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    dir_ = root_ / name;
    synth_model(dir_, options);
  }
  ~TinyModel() { std::filesystem::remove_all(root_); }
  TinyModel(const TinyModel&) = delete;
  TinyModel& operator=(const TinyModel&) = delete;
  const std::filesystem::path& dir() const { return dir_; }

 private:
  static SynthOptions tiny_qwen3() {
    SynthOptions o;
    o.shape = synth_default_shape("qwen3");
    o.shape.hidden = 64;
    o.shape.layers = 2;
    o.shape.heads = 4;
    o.shape.kv_heads = 2;
    o.shape.head_dim = 16;
    o.shape.intermediate = 128;
    o.shape.max_positions = 512;
    o.seed = 14;
    o.tokenizer_from = model_dir("coder-dense");
    return o;
  }

  std::filesystem::path root_, dir_;
};

}  // namespace lmlab::test
