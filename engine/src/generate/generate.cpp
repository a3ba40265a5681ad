// generate(): one sequence alone, a SequenceGenerator driven through Session::append (the whole prompt in one
// append, which runs it in chunks of --prefill-size).
#include "lmlab/generate.h"

#include <chrono>
#include <limits>
#include <thread>

namespace lmlab {

GenerationResult generate(Session& session, std::span<const int32_t> prompt, const SamplingParams& params,
                          const std::function<bool(const TokenEvent&)>& on_token) {
  SequenceGenerator gen(session, prompt, params);
  // Test-only (--debug-token-delay-us): a slow decode, so that server tests can catch requests in flight and
  // the gate's tests see it in decode_ns.
  const int64_t delay_us = session.model().options().debug_token_delay_us;
  for (;;) {
    const bool decoding = !gen.prefilling();
    const std::span<const int32_t> input = gen.next_input(std::numeric_limits<int64_t>::max());
    if (input.empty()) break;
    if (decoding && delay_us > 0) std::this_thread::sleep_for(std::chrono::microseconds(2 * delay_us));
    const std::optional<TokenEvent> ev = gen.accept(session.append(input));
    if (ev && on_token && !on_token(*ev)) gen.cancel();
  }
  return gen.finish();
}

}  // namespace lmlab
