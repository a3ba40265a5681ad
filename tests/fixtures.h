// Paths to ../shared/fixtures (LMLAB_FIXTURES_DIR, or the environment variable of that name: the GPU machine
// runs a copied binary where the compiled-in path does not exist) and typed access to golden safetensors tensors.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <span>
#include <string>

#include "lmlab/safetensors.h"

namespace lmlab::test {

inline std::filesystem::path fixtures_dir() {
  const char* env = std::getenv("LMLAB_FIXTURES_DIR");
  return env && *env ? env : LMLAB_FIXTURES_DIR;
}
inline std::filesystem::path model_dir(const std::string& name) { return fixtures_dir() / "models" / name; }
inline std::filesystem::path golden_path(const std::string& name) {
  return fixtures_dir() / "golden" / (name + ".safetensors");
}

template <typename T>
std::span<const T> golden_tensor(const SafetensorsFile& f, const std::string& name) {
  const TensorInfo* t = f.find(name);
  if (!t) return {};
  return {reinterpret_cast<const T*>(f.data(*t)), static_cast<size_t>(t->numel())};
}

}  // namespace lmlab::test
