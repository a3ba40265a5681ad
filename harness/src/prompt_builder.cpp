#include "prompt_builder.h"

#include <fmt/format.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "lmlab/error.h"
#include "text_file.h"

namespace lmlab::harness_detail {

PromptBuilder::PromptBuilder(const PromptSource& source, const Model& model)
    : source_(source), vocab_(model.info().vocab) {
  if (source.kind != PromptSource::Kind::text_file) return;
  if (!model.has_tokenizer())
    throw Error(ErrorKind::invalid_input, model.info().dir.string(),
                "a text prompt needs the model's tokenizer.json (or use \"prompt\": {\"source\": \"random\"})");
  tokenize_text(model.tokenizer());
}

PromptBuilder::PromptBuilder(const PromptSource& source, const std::filesystem::path& model_dir) : source_(source) {
  const auto config = model_dir / "config.json";
  const std::string text = read_text_file(config, "model's config.json", 1 << 20);  // a config is a few KiB
  const auto j = nlohmann::json::parse(text, nullptr, false);
  const nlohmann::json* v = j.is_object() && j.contains("vocab_size") ? &j["vocab_size"] : nullptr;
  if (!v && j.is_object() && j.contains("text_config") && j["text_config"].is_object() && j["text_config"].contains("vocab_size"))
    v = &j["text_config"]["vocab_size"];
  if (!v || !v->is_number_integer() || v->get<int64_t>() <= 0)
    throw Error(ErrorKind::model_format, config.string() + ": field 'vocab_size'", "missing or not a positive integer");
  vocab_ = v->get<int64_t>();
  if (source.kind == PromptSource::Kind::text_file) tokenize_text(Tokenizer::from_file(model_dir / "tokenizer.json"));
}

void PromptBuilder::tokenize_text(const Tokenizer& tokenizer) {
  const PromptSource& source = source_;
  std::ifstream in(source.text_file, std::ios::binary);
  if (!in) throw Error(ErrorKind::io, source.text_file.string(), "cannot open the prompt text file");
  std::stringstream text;
  text << in.rdbuf();
  text_ids_ = tokenizer.encode(text.str(), /*add_special_tokens=*/false);
  if (text_ids_.empty()) throw Error(ErrorKind::invalid_input, source.text_file.string(), "the prompt text encodes to no tokens");
}

std::vector<int32_t> PromptBuilder::build(int64_t n) const {
  std::vector<int32_t> ids(static_cast<size_t>(n));
  if (source_.kind == PromptSource::Kind::text_file) {
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = text_ids_[i % text_ids_.size()];
  } else {
    std::mt19937_64 rng(source_.seed);
    for (auto& id : ids) id = static_cast<int32_t>(rng() % static_cast<uint64_t>(vocab_));
  }
  return ids;
}

std::string describe(const PromptSource& source) {
  if (source.kind == PromptSource::Kind::text_file)
    return fmt::format("tokens of {} (tokenized once without special tokens, repeated and cut to each context)",
                       source.text_file.filename().string());
  return fmt::format("random token ids uniform over the vocabulary (mt19937_64, seed {})", source.seed);
}

}  // namespace lmlab::harness_detail
