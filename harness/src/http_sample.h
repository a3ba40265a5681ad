// A streamed completion as a raw results Sample: the same fields the in-process runner records, measured
// from the client side of the SSE stream.
#pragma once

#include <string>

#include "http_client.h"
#include "lmlab/results.h"

namespace lmlab::harness_detail {

// ttft_ns: request sent -> first chunk with text; decode: the chunks after it (tokens from the usage chunk,
// or one per chunk when the server sends no usage), decode_ns: first -> last chunk; prompt_tokens from usage
// (else `prompt_tokens`); prompt_ns = ttft_ns (prefill is not visible apart from the first token over HTTP).
Sample sample_from_stream(const StreamedCompletion& r, const std::string& config, int64_t context, int64_t repetition,
                          int64_t prompt_tokens);

}  // namespace lmlab::harness_detail
