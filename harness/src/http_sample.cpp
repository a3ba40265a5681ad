#include "http_sample.h"

#include <fmt/format.h>

namespace lmlab::harness_detail {

Sample sample_from_stream(const StreamedCompletion& r, const std::string& config, int64_t context, int64_t repetition,
                          int64_t prompt_tokens) {
  Sample s;
  s.config = config;
  s.context_tokens = context;
  s.repetition = repetition;
  if (r.error) {
    s.error = *r.error;
    return s;
  }
  if (r.chunk_ns.size() < 2) {  // one chunk gives a TTFT but no decode rate: not a usable sample
    s.error = fmt::format("the stream carried {} chunk(s) of text: too few to time decoding", r.chunk_ns.size());
    return s;
  }
  s.chunk_ns = r.chunk_ns;
  s.prompt_tokens = r.prompt_tokens >= 0 ? r.prompt_tokens : prompt_tokens;
  s.ttft_ns = r.chunk_ns.front();
  s.prompt_ns = s.ttft_ns;
  const int64_t tokens = r.completion_tokens >= 0 ? r.completion_tokens : static_cast<int64_t>(r.chunk_ns.size());
  s.decode_tokens = tokens > 0 ? tokens - 1 : 0;  // the first token is in the TTFT
  s.decode_ns = r.chunk_ns.back() - r.chunk_ns.front();
  return s;
}

}  // namespace lmlab::harness_detail
