// SSE chunks of one streamed answer (see answer_stream.h).
#include "server/answer_stream.h"

namespace lmlab::server {

using nlohmann::ordered_json;

AnswerStream::AnswerStream(const GenerationRequest& rq, ResponseIds ids, const Tokenizer& tok,
                           std::chrono::milliseconds keep_alive)
    : rq_(rq), ids_(std::move(ids)), tok_(tok), keep_alive_(keep_alive) {
  if (rq.endpoint == Endpoint::chat && rq.tool_format != ToolCallFormat::none) {
    tools_.emplace(rq.tool_format);
    (void)tools_->push(rq.answer_opening);  // a forced call's start: held until the call completes
  }
}

std::string AnswerStream::start() const { return rq_.endpoint == Endpoint::chat ? sse_role_chunk(ids_) : ""; }

ordered_json AnswerStream::take_logprobs() {
  if (rq_.sampling.logprobs < 0) return nullptr;
  ordered_json j = rq_.endpoint == Endpoint::chat ? chat_logprobs_json(tok_, pending_)
                                                  : completion_logprobs_json(tok_, pending_, text_offset_);
  pending_.clear();
  return j;
}

std::string AnswerStream::chunks(std::vector<ToolStreamPiece> pieces) {
  std::string out;
  for (ToolStreamPiece& p : pieces) {
    if (p.call) {
      ordered_json delta = {{"tool_calls", ordered_json::array({tool_call_json(*p.call, calls_sent_++)})}};
      out += sse_chunk(Endpoint::chat, ids_, std::move(delta), take_logprobs(), nullptr);
    } else if (!p.content.empty()) {
      ordered_json payload = rq_.endpoint == Endpoint::chat ? ordered_json{{"content", p.content}} : ordered_json(p.content);
      out += sse_chunk(rq_.endpoint, ids_, std::move(payload), take_logprobs(), nullptr);
    }
  }
  return out;
}

std::string AnswerStream::push(const std::string& text, std::span<const LoggedToken> tokens) {
  pending_.insert(pending_.end(), tokens.begin(), tokens.end());
  tokens_seen_ += tokens.size();
  std::string out = tools_ ? chunks(tools_->push(text)) : chunks({{text, std::nullopt}});
  const auto now = std::chrono::steady_clock::now();
  if (out.empty() && now - last_output_ >= keep_alive_) out = kSseKeepAlive;
  if (!out.empty()) last_output_ = now;
  return out;
}

std::string AnswerStream::finish(const GenerationOutcome& out) {
  std::string s = tools_ ? chunks(tools_->finish()) : "";
  if (tokens_seen_ < out.logged.size())
    pending_.insert(pending_.end(), out.logged.begin() + static_cast<std::ptrdiff_t>(tokens_seen_), out.logged.end());
  const bool called = tools_ && tools_->calls() > 0;
  const ordered_json empty = rq_.endpoint == Endpoint::chat ? ordered_json::object() : ordered_json("");
  ordered_json logprobs = pending_.empty() ? ordered_json() : take_logprobs();
  s += sse_chunk(rq_.endpoint, ids_, empty, std::move(logprobs), called ? "tool_calls" : out.finish_reason);
  if (rq_.include_usage) s += sse_usage_chunk(rq_.endpoint, ids_, out);
  return s;
}

}  // namespace lmlab::server
