#include "arch/registry.h"

#include <fmt/format.h>

#include "config/config_reader.h"

namespace lmlab {

namespace {
constexpr ArchEntry kArchs[] = {
    {"llama", parse_llama},       {"qwen3", parse_qwen3},     {"qwen3_moe", parse_qwen3_moe},
    {"mixtral", parse_mixtral},   {"gemma3", parse_gemma3},
};
// Other spellings of the same architecture.
constexpr std::pair<std::string_view, std::string_view> kAliases[] = {
    {"gemma3_text", "gemma3"},
};
}  // namespace

const ArchEntry* find_arch(std::string_view model_type) {
  for (auto [alias, canonical] : kAliases)
    if (alias == model_type) model_type = canonical;
  for (const auto& a : kArchs)
    if (a.model_type == model_type) return &a;
  return nullptr;
}

std::vector<std::string_view> registered_archs() {
  std::vector<std::string_view> out;
  for (const auto& a : kArchs) out.push_back(a.model_type);
  return out;
}

ModelSpec load_model_spec(const std::string& model_dir) {
  ConfigReader cfg = ConfigReader::from_file(model_dir + "/config.json");
  const std::string model_type = cfg.get<std::string>("model_type");
  const ArchEntry* arch = find_arch(model_type);
  if (!arch) {
    std::string known;
    for (auto a : registered_archs()) known += (known.empty() ? "" : ", ") + std::string(a);
    throw cfg.unsupported("model_type", fmt::format("architecture '{}' is not supported (known: {}, gemma3_text)",
                                                    model_type, known));
  }
  ModelSpec spec;
  spec.arch = std::string(arch->model_type);
  try {
    arch->parse(cfg, spec);
  } catch (const nlohmann::json::exception& e) {  // a wrong-typed value no check above caught: still name the file
    throw Error(ErrorKind::model_format, cfg.file(), fmt::format("a field has the wrong type: {}", e.what()));
  }
  spec.ignored_config_keys = cfg.ignored_keys();
  return spec;
}

}  // namespace lmlab
