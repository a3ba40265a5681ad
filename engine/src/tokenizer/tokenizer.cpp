// lmlab::Tokenizer: loads tokenizer.json and runs the `tokenizers` pipeline.
//   encode: added tokens cut out of the raw text -> normalizer on the other pieces -> added tokens with
//           normalized=true cut out -> pre-tokenizer -> BPE per word -> post-processor (if asked).
//   decode: ids -> token strings (added tokens first, then the model vocabulary; unknown ids skipped,
//           special tokens skipped on request) -> decoder chain -> concatenation.
// "truncation" and "padding" are ignored: transformers overrides them per call and lmlab never pads.
// Invariant: encode accepts only valid UTF-8 (lmlab::Error invalid_input otherwise) and decode always
// returns valid UTF-8.
#include "lmlab/tokenizer.h"

#include <algorithm>
#include <fstream>
#include <limits>
#include <sstream>

#include "lmlab/error.h"
#include "tokenizer/added_vocabulary.h"
#include "tokenizer/bpe.h"
#include "tokenizer/decoder.h"
#include "tokenizer/normalizer.h"
#include "tokenizer/post_processor.h"
#include "tokenizer/pre_tokenizer.h"
#include "text/unicode.h"
#include "util/file_read.h"

namespace lmlab {

struct Tokenizer::Impl {
  std::string source;
  std::unique_ptr<tok::Normalizer> normalizer;
  std::unique_ptr<tok::PreTokenizer> pre_tokenizer;
  std::unique_ptr<tok::BpeModel> model;
  std::unique_ptr<tok::PostProcessor> post_processor;
  std::unique_ptr<tok::Decoder> decoder;
  tok::AddedVocabulary added;

  const std::string* token_of(int32_t id) const {
    if (const std::string* t = added.id_to_token(id)) return t;
    return model->id_to_token(id);
  }
};

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::from_file(const std::filesystem::path& tokenizer_json) {
  // Real tokenizer.json files reach ~35 MB (Gemma 3); the bound keeps a wrong path from reading gigabytes.
  return from_json_text(read_regular_file(tokenizer_json, uint64_t{512} << 20), tokenizer_json.string());
}

namespace {

std::unique_ptr<tok::BpeModel> make_model(const tok::json& root, const tok::JsonCtx& root_ctx) {
  const tok::JsonCtx ctx = root_ctx.at("model");
  const tok::json& model = tok::require_object(tok::require_field(root, "model", root_ctx), ctx);
  // Old files omit the tag; a vocab with merges is a BPE model.
  const std::string type = tok::find_field(model, "type") != nullptr     ? tok::get_type(model, ctx)
                           : tok::find_field(model, "merges") != nullptr ? "BPE"
                                                                         : "";
  if (type.empty()) ctx.at("type").fail(ErrorKind::model_format, "is missing");
  if (type != "BPE") ctx.unsupported_type(type);
  return tok::BpeModel::from_json(model, ctx);
}

}  // namespace

Tokenizer Tokenizer::from_json_text(std::string_view json_text, std::string source_name) {
  tok::json root;
  try {
    root = tok::json::parse(json_text.begin(), json_text.end());
  } catch (const tok::json::exception& e) {
    throw Error(ErrorKind::model_format, source_name, std::string("invalid JSON: ") + e.what());
  }
  const tok::JsonCtx ctx{source_name, ""};
  if (!root.is_object()) throw Error(ErrorKind::model_format, source_name, "the top level must be a JSON object");
  auto impl = std::make_unique<Impl>();
  impl->source = source_name;
  try {
    if (const tok::json* n = tok::find_field(root, "normalizer"))
      impl->normalizer = tok::make_normalizer(*n, ctx.at("normalizer"));
    if (const tok::json* p = tok::find_field(root, "pre_tokenizer"))
      impl->pre_tokenizer = tok::make_pre_tokenizer(*p, ctx.at("pre_tokenizer"));
    impl->model = make_model(root, ctx);
    if (const tok::json* p = tok::find_field(root, "post_processor"))
      impl->post_processor = tok::make_post_processor(*p, ctx.at("post_processor"));
    if (const tok::json* d = tok::find_field(root, "decoder")) impl->decoder = tok::make_decoder(*d, ctx.at("decoder"));
    if (const tok::json* a = tok::find_field(root, "added_tokens"))
      impl->added.load(*a, ctx.at("added_tokens"), *impl->model, impl->normalizer.get());
  } catch (const tok::json::exception& e) {  // a type mismatch the field checks did not anticipate
    throw Error(ErrorKind::model_format, source_name, std::string("unexpected JSON value: ") + e.what());
  }
  return Tokenizer(std::move(impl));
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special_tokens) const {
  return encode_at_most(text, add_special_tokens, std::numeric_limits<int64_t>::max() - 1);
}

std::vector<int32_t> Tokenizer::encode_at_most(std::string_view text, bool add_special_tokens,
                                               int64_t max_tokens) const {
  max_tokens = std::max<int64_t>(max_tokens, 0);
  if (const size_t bad = tok::utf8_find_invalid(text); bad != std::string_view::npos) {
    throw Error(ErrorKind::invalid_input, "Tokenizer::encode",
                "the text is not valid UTF-8 (byte offset " + std::to_string(bad) + ")");
  }
  std::vector<tok::Piece> pieces = impl_->added.extract_and_normalize(text, impl_->normalizer.get());
  if (impl_->pre_tokenizer) impl_->pre_tokenizer->pre_tokenize(pieces);
  std::vector<int32_t> ids;
  ids.reserve(static_cast<size_t>(std::min<int64_t>(static_cast<int64_t>(text.size() / 3 + 4), max_tokens + 1)));
  for (const tok::Piece& p : pieces) {
    if (p.added_id >= 0) {
      ids.push_back(p.added_id);
    } else {
      impl_->model->tokenize(p.text, ids);
    }
    // BPE is the costly step, and a piece encodes to at most its length in tokens: stop at the limit.
    if (static_cast<int64_t>(ids.size()) > max_tokens) {
      ids.resize(static_cast<size_t>(max_tokens + 1));
      return ids;
    }
  }
  if (add_special_tokens && impl_->post_processor) impl_->post_processor->process(ids);
  if (static_cast<int64_t>(ids.size()) > max_tokens) ids.resize(static_cast<size_t>(max_tokens + 1));
  return ids;
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids) {
    const std::string* t = impl_->token_of(id);
    if (t == nullptr) continue;
    if (skip_special_tokens && impl_->added.is_special_token(*t)) continue;
    tokens.push_back(*t);
  }
  if (impl_->decoder) {
    impl_->decoder->decode_chain(tokens);
    std::string out;
    for (const std::string& t : tokens) out += t;
    return out;
  }
  std::string out;  // no decoder: tokens joined by spaces, as `tokenizers` does
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (i > 0) out += ' ';
    out += tokens[i];
  }
  return out;
}

int32_t Tokenizer::vocab_size() const { return std::max(impl_->model->max_id(), impl_->added.max_id()) + 1; }

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  if (auto id = impl_->added.token_to_id(token)) return id;
  return impl_->model->token_to_id(token);
}

std::string Tokenizer::id_to_token(int32_t id) const {
  const std::string* t = impl_->token_of(id);
  return t == nullptr ? std::string() : *t;
}

bool Tokenizer::is_special(int32_t id) const {
  const std::string* t = impl_->added.id_to_token(id);
  return t != nullptr && impl_->added.is_special_token(*t);
}

}  // namespace lmlab
