// OpenAI logprobs bodies (see logprobs_json.h).
#include "server/logprobs_json.h"

namespace lmlab::server {

namespace {

using nlohmann::ordered_json;

std::string token_text(const Tokenizer& tok, int32_t id) { return tok.decode(std::span<const int32_t>(&id, 1)); }

ordered_json utf8_bytes(const std::string& s) {
  ordered_json b = ordered_json::array();
  for (const char c : s) b.push_back(static_cast<int>(static_cast<unsigned char>(c)));
  return b;
}

int64_t code_points(const std::string& s) {
  int64_t n = 0;
  for (const char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return n;
}

ordered_json chat_entry(const Tokenizer& tok, int32_t id, float logprob) {
  const std::string text = token_text(tok, id);
  return {{"token", text}, {"logprob", logprob}, {"bytes", utf8_bytes(text)}};
}

}  // namespace

ordered_json chat_logprobs_json(const Tokenizer& tok, std::span<const LoggedToken> tokens) {
  ordered_json content = ordered_json::array();
  for (const LoggedToken& t : tokens) {
    ordered_json entry = chat_entry(tok, t.id, t.logprobs.logprob);
    ordered_json top = ordered_json::array();
    for (const TopLogprob& alt : t.logprobs.top) top.push_back(chat_entry(tok, alt.id, alt.logprob));
    entry["top_logprobs"] = std::move(top);
    content.push_back(std::move(entry));
  }
  return {{"content", std::move(content)}};
}

ordered_json completion_logprobs_json(const Tokenizer& tok, std::span<const LoggedToken> tokens, int64_t& offset) {
  ordered_json texts = ordered_json::array(), logprobs = ordered_json::array(), tops = ordered_json::array(),
               offsets = ordered_json::array();
  for (const LoggedToken& t : tokens) {
    const std::string text = token_text(tok, t.id);
    texts.push_back(text);
    logprobs.push_back(t.logprobs.logprob);
    ordered_json top = ordered_json::object();
    for (const TopLogprob& alt : t.logprobs.top) top[token_text(tok, alt.id)] = alt.logprob;
    tops.push_back(std::move(top));
    offsets.push_back(offset);
    offset += code_points(text);
  }
  return {{"tokens", std::move(texts)},
          {"token_logprobs", std::move(logprobs)},
          {"top_logprobs", std::move(tops)},
          {"text_offset", std::move(offsets)}};
}

}  // namespace lmlab::server
