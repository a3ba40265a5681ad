// Architecture registry: HF model_type -> the function that turns its config.json into a ModelSpec.
// Adding an architecture = one file in engine/src/arch/ + one row in registry.cpp + one golden fixture
// (tests/golden_test.cpp fails for a registered architecture without one).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "config/model_spec.h"

namespace lmlab {

class ConfigReader;

using ArchParseFn = void (*)(ConfigReader& cfg, ModelSpec& spec);

struct ArchEntry {
  std::string_view model_type;
  ArchParseFn parse;
};

// Resolves aliases (gemma3_text -> gemma3); nullptr when unknown.
const ArchEntry* find_arch(std::string_view model_type);
std::vector<std::string_view> registered_archs();

// Reads <dir>/config.json and builds the spec; unknown model_type or missing fields throw.
ModelSpec load_model_spec(const std::string& model_dir);

void parse_llama(ConfigReader& cfg, ModelSpec& spec);
void parse_qwen3(ConfigReader& cfg, ModelSpec& spec);
void parse_qwen3_moe(ConfigReader& cfg, ModelSpec& spec);
void parse_mixtral(ConfigReader& cfg, ModelSpec& spec);
void parse_gemma3(ConfigReader& cfg, ModelSpec& spec);

}  // namespace lmlab
