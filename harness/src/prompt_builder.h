// Prompts of exactly `n` tokens for one model, from a scenario's PromptSource (deterministic: the same
// source, model and n always give the same ids; a shorter prompt is a prefix of a longer one).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "lmlab/harness.h"
#include "lmlab/model.h"

namespace lmlab::harness_detail {

class PromptBuilder {
 public:
  // Tokenizes a text source once (without special tokens). Throws lmlab::Error naming the file when it
  // cannot be read or encodes to no tokens, or when the model has no tokenizer.
  PromptBuilder(const PromptSource& source, const Model& model);
  // The same prompts without loading the model (HTTP run modes): the vocabulary from config.json's
  // vocab_size, the tokenizer from tokenizer.json (text sources only). Errors name the file and field.
  PromptBuilder(const PromptSource& source, const std::filesystem::path& model_dir);

  std::vector<int32_t> build(int64_t n) const;

 private:
  void tokenize_text(const Tokenizer& tokenizer);
  PromptSource source_;
  int64_t vocab_ = 0;
  std::vector<int32_t> text_ids_;  // text source: the file's tokens, repeated to fill n
};

// One line for the run's notes, e.g. "random token ids (mt19937_64, seed 42)".
std::string describe(const PromptSource& source);

}  // namespace lmlab::harness_detail
