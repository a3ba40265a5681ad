// ConfigReader: typed access to config.json that cannot lie. Every key read is recorded, so the keys a
// model sets that lmlab ignores can be listed (`lmlab info`); a missing required key or a value of the wrong
// type is an Error naming the file and the field; keys with two spellings across transformers versions
// (rope_theta / rope_parameters, num_experts / num_local_experts, torch_dtype / dtype) go through get_any.
#pragma once

#include <fmt/format.h>

#include <initializer_list>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "lmlab/error.h"

namespace lmlab {

class ConfigReader {
 public:
  ConfigReader(nlohmann::json root, std::string file) : root_(std::move(root)), file_(std::move(file)) {}
  static ConfigReader from_file(const std::string& path);

  const std::string& file() const { return file_; }
  const nlohmann::json& raw() const { return root_; }

  // The value at `key`, or nullptr when absent or JSON null. Marks the key as read.
  const nlohmann::json* find(const std::string& key) {
    read_.insert(key);
    auto it = root_.find(key);
    return (it == root_.end() || it->is_null()) ? nullptr : &*it;
  }
  bool has(const std::string& key) { return find(key) != nullptr; }

  template <typename T>
  T get(const std::string& key) {
    const nlohmann::json* v = find(key);
    if (!v) throw error(key, "required field is missing");
    return convert<T>(*v, key);
  }

  template <typename T>
  T get_or(const std::string& key, T fallback) {
    const nlohmann::json* v = find(key);
    return v ? convert<T>(*v, key) : fallback;
  }

  template <typename T>
  std::optional<T> get_opt(const std::string& key) {
    const nlohmann::json* v = find(key);
    if (!v) return std::nullopt;
    return convert<T>(*v, key);
  }

  // The first of several spellings that is present (all are marked read).
  template <typename T>
  std::optional<T> get_any(std::initializer_list<const char*> keys) {
    std::optional<T> out;
    for (const char* k : keys)
      if (const nlohmann::json* v = find(k); v && !out) out = convert<T>(*v, k);
    return out;
  }

  template <typename T>
  T require_any(std::initializer_list<const char*> keys) {
    auto v = get_any<T>(keys);
    if (!v) {
      std::string names;
      for (const char* k : keys) names += (names.empty() ? "" : " or ") + std::string(k);
      throw error(names, "required field is missing");
    }
    return *v;
  }

  Error error(const std::string& key, const std::string& message) const {
    return Error(ErrorKind::model_format, file_ + ": field '" + key + "'", message);
  }
  Error unsupported(const std::string& key, const std::string& message) const {
    return Error(ErrorKind::unsupported, file_ + ": field '" + key + "'", message);
  }

  // Top-level keys present in the file that nothing read.
  std::vector<std::string> ignored_keys() const {
    std::vector<std::string> out;
    for (auto it = root_.begin(); it != root_.end(); ++it)
      if (!read_.count(it.key())) out.push_back(it.key());
    return out;
  }

 private:
  template <typename T>
  T convert(const nlohmann::json& v, const std::string& key) const {
    try {
      if constexpr (std::is_same_v<T, bool>) {
        if (!v.is_boolean()) throw error(key, fmt::format("expected true/false, got {}", v.dump()));
      } else if constexpr (std::is_integral_v<T>) {
        if (!v.is_number_integer()) throw error(key, fmt::format("expected an integer, got {}", v.dump()));
      } else if constexpr (std::is_floating_point_v<T>) {
        if (!v.is_number()) throw error(key, fmt::format("expected a number, got {}", v.dump()));
      } else if constexpr (std::is_same_v<T, std::string>) {
        if (!v.is_string()) throw error(key, fmt::format("expected a string, got {}", v.dump()));
      }
      return v.get<T>();
    } catch (const nlohmann::json::exception& e) {
      throw error(key, fmt::format("has the wrong type: {}", e.what()));
    }
  }

  nlohmann::json root_;
  std::string file_;
  std::set<std::string> read_;
};

}  // namespace lmlab
