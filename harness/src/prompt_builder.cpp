#include "prompt_builder.h"

#include <fmt/format.h>

#include <fstream>
#include <random>
#include <sstream>

#include "lmlab/error.h"

namespace lmlab::harness_detail {

PromptBuilder::PromptBuilder(const PromptSource& source, const Model& model)
    : source_(source), vocab_(model.info().vocab) {
  if (source.kind != PromptSource::Kind::text_file) return;
  if (!model.has_tokenizer())
    throw Error(ErrorKind::invalid_input, model.info().dir.string(),
                "a text prompt needs the model's tokenizer.json (or use \"prompt\": {\"source\": \"random\"})");
  std::ifstream in(source.text_file, std::ios::binary);
  if (!in) throw Error(ErrorKind::io, source.text_file.string(), "cannot open the prompt text file");
  std::stringstream text;
  text << in.rdbuf();
  text_ids_ = model.tokenizer().encode(text.str(), /*add_special_tokens=*/false);
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
