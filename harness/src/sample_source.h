// Where a run's samples come from: the engine in this process, an `lmlab serve` subprocess, or any
// OpenAI-compatible server at a URL. Every source measures the same thing (one greedy generation of
// decode_tokens tokens, EOS ignored, on the scenario's prompt of `context` tokens) into one raw Sample, and
// records a failed generation as a Sample with `error` set.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include "lmlab/harness.h"

namespace lmlab::harness_detail {

class SampleSource {
 public:
  virtual ~SampleSource() = default;
  virtual Sample measure(const std::string& config, int64_t context, int64_t repetition, int64_t decode_tokens) = 0;
  // Teacher-forced NLL of the first `tokens` tokens of the prompt source (scenario perplexity_tokens). Only the
  // engine in process exposes next-token probabilities: other sources record why they cannot.
  virtual Evaluation evaluate(const std::string& config, int64_t tokens);
  // What the runtime says it is ("lmlab <commit>", llama.cpp's build info, "unknown").
  virtual std::string version() const = 0;
};

// Each throws lmlab::Error when the source cannot start (a model the options cannot load, a server that does
// not listen, a bad URL).
std::unique_ptr<SampleSource> in_process_source(const std::filesystem::path& model_dir, const ModelOptions& options,
                                                const PromptSource& prompt, const std::string& lmlab_version);
std::unique_ptr<SampleSource> serve_source(const std::filesystem::path& lmlab_exe, const std::filesystem::path& model_dir,
                                           const ModelOptions& options, const PromptSource& prompt,
                                           const std::string& lmlab_version);
std::unique_ptr<SampleSource> url_source(const std::string& url, const std::filesystem::path& model_dir,
                                         const PromptSource& prompt);

// `lmlab serve` flags that give a server these options (every row of the option table).
std::vector<std::string> serve_flags(const ModelOptions& options);

}  // namespace lmlab::harness_detail
