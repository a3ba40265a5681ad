// Post-processor implementations. TemplateProcessing's "single" template is a list of pieces,
// {"SpecialToken": {"id": "<s>"}} (ids looked up in "special_tokens") or {"Sequence": {"id": "A"}};
// the legacy string form "<s> $A </s>" is accepted too.
// Invariant: every special token named by a template resolves to ids at load time.
#include "tokenizer/post_processor.h"

#include <sstream>

namespace lmlab::tok {

namespace {

// One element of a template: either the input sequence or fixed ids.
struct TemplatePart {
  bool is_sequence = false;
  std::vector<int32_t> ids;
};

class Template final : public PostProcessor {
 public:
  explicit Template(std::vector<TemplatePart> parts) : parts_(std::move(parts)) {}
  void process(std::vector<int32_t>& ids) const override {
    std::vector<int32_t> out;
    out.reserve(ids.size() + 4);
    for (const TemplatePart& p : parts_) {
      if (p.is_sequence) {
        out.insert(out.end(), ids.begin(), ids.end());
      } else {
        out.insert(out.end(), p.ids.begin(), p.ids.end());
      }
    }
    ids = std::move(out);
  }

 private:
  std::vector<TemplatePart> parts_;
};

class Identity final : public PostProcessor {
 public:
  void process(std::vector<int32_t>&) const override {}
};

class Sequence final : public PostProcessor {
 public:
  explicit Sequence(std::vector<std::unique_ptr<PostProcessor>> steps) : steps_(std::move(steps)) {}
  void process(std::vector<int32_t>& ids) const override {
    for (const auto& s : steps_) s->process(ids);
  }

 private:
  std::vector<std::unique_ptr<PostProcessor>> steps_;
};

// "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}
std::vector<int32_t> special_ids(const json& v, const std::string& name, const JsonCtx& ctx) {
  const JsonCtx sctx = ctx.at("special_tokens");
  const json* table = find_field(v, "special_tokens");
  const json* entry = table != nullptr ? find_field(*table, name) : nullptr;
  if (entry == nullptr) sctx.fail(ErrorKind::model_format, "has no entry for '" + name + "' used by the template");
  const json& ids = get_array(*entry, "ids", sctx.at(name));
  std::vector<int32_t> out;
  for (const json& id : ids) {
    if (!id.is_number_integer()) sctx.at(name).at("ids").fail(ErrorKind::model_format, "must hold integers");
    out.push_back(id.get<int32_t>());
  }
  return out;
}

std::unique_ptr<PostProcessor> make_template(const json& v, const JsonCtx& ctx) {
  const JsonCtx tctx = ctx.at("single");
  const json& single = require_field(v, "single", ctx);
  std::vector<TemplatePart> parts;
  auto add_name = [&](std::string name) {
    if (!name.empty() && name[0] == '$') {
      const std::string seq =
          name.substr(1, name.find(':') == std::string::npos ? std::string::npos : name.find(':') - 1);
      if (!seq.empty() && seq != "A" && seq != "0")
        tctx.fail(ErrorKind::unsupported, "uses sequence '" + seq + "' (only A)");
      parts.push_back({true, {}});
      return;
    }
    if (const size_t colon = name.rfind(':'); colon != std::string::npos) name.resize(colon);
    parts.push_back({false, special_ids(v, name, ctx)});
  };
  if (single.is_string()) {  // legacy "<s> $A </s>"
    std::istringstream words(single.get<std::string>());
    for (std::string w; words >> w;) add_name(w);
    return std::make_unique<Template>(std::move(parts));
  }
  if (!single.is_array()) tctx.fail(ErrorKind::model_format, "must be an array or a string");
  for (size_t i = 0; i < single.size(); ++i) {
    const json& piece = single[i];
    const JsonCtx pctx = tctx.at(i);
    if (const json* s = find_field(piece, "Sequence")) {
      const std::string id = get_string_or(*s, "id", "A", pctx.at("Sequence"));
      if (id != "A")
        pctx.at("Sequence").at("id").fail(ErrorKind::unsupported, "'" + id + "' is not supported in a single template");
      parts.push_back({true, {}});
    } else if (const json* t = find_field(piece, "SpecialToken")) {
      parts.push_back({false, special_ids(v, get_string(*t, "id", pctx.at("SpecialToken")), ctx)});
    } else {
      pctx.fail(ErrorKind::model_format, "must be {\"Sequence\": ...} or {\"SpecialToken\": ...}");
    }
  }
  return std::make_unique<Template>(std::move(parts));
}

// RobertaProcessing / BertProcessing: "cls": ["<s>", 0], "sep": ["</s>", 2] -> cls A sep.
int32_t pair_id(const json& v, std::string_view key, const JsonCtx& ctx) {
  const json& p = require_field(v, key, ctx);
  if (!p.is_array() || p.size() != 2 || !p[1].is_number_integer())
    ctx.at(key).fail(ErrorKind::model_format, "must be [token, id]");
  return p[1].get<int32_t>();
}

}  // namespace

std::unique_ptr<PostProcessor> make_post_processor(const json& v, const JsonCtx& ctx) {
  require_object(v, ctx);
  const std::string type = get_type(v, ctx);
  if (type == "TemplateProcessing") return make_template(v, ctx);
  if (type == "ByteLevel") return std::make_unique<Identity>();  // only trims offsets in `tokenizers`
  if (type == "RobertaProcessing" || type == "BertProcessing") {
    std::vector<TemplatePart> parts;
    parts.push_back({false, {pair_id(v, "cls", ctx)}});
    parts.push_back({true, {}});
    parts.push_back({false, {pair_id(v, "sep", ctx)}});
    return std::make_unique<Template>(std::move(parts));
  }
  if (type == "Sequence") {
    const json& list = get_array(v, "processors", ctx);
    std::vector<std::unique_ptr<PostProcessor>> steps;
    for (size_t i = 0; i < list.size(); ++i) steps.push_back(make_post_processor(list[i], ctx.at("processors").at(i)));
    return std::make_unique<Sequence>(std::move(steps));
  }
  ctx.unsupported_type(type);
}

}  // namespace lmlab::tok
