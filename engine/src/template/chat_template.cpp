// ChatTemplate: loads a model's Jinja chat template (chat_template.jinja or tokenizer_config.json),
// parses it once, and renders it with a context built like transformers' apply_chat_template.
#include "lmlab/chat_template.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "lmlab/error.h"
#include "template/evaluator.h"
#include "template/lexer.h"
#include "template/parser.h"
#include "util/file_read.h"

namespace lmlab {

using nlohmann::ordered_json;

struct ChatTemplate::Impl {
  std::string source;
  std::string name;
  tpl::Body root;
  ordered_json special_tokens = ordered_json::object();  // bos_token, eos_token, ... as strings
  std::string bos, eos;
};

namespace {

std::string read_file(const std::filesystem::path& p) {
  return read_regular_file(p, uint64_t{64} << 20);  // tokenizer_config.json may carry many added tokens
}

tpl::Value to_value(const ordered_json& j, int depth = 0) {
  if (depth > 512) throw Error(ErrorKind::invalid_input, "chat template context", "JSON nested too deeply");
  switch (j.type()) {
    case ordered_json::value_t::null: return tpl::Value::none();
    case ordered_json::value_t::boolean: return tpl::Value(j.get<bool>());
    case ordered_json::value_t::number_integer: return tpl::Value(j.get<int64_t>());
    case ordered_json::value_t::number_unsigned: {
      const uint64_t u = j.get<uint64_t>();
      if (u > static_cast<uint64_t>(INT64_MAX)) return tpl::Value(static_cast<double>(u));
      return tpl::Value(static_cast<int64_t>(u));
    }
    case ordered_json::value_t::number_float: return tpl::Value(j.get<double>());
    case ordered_json::value_t::string: return tpl::Value(j.get<std::string>());
    case ordered_json::value_t::array: {
      tpl::List items;
      for (const auto& e : j) items.push_back(to_value(e, depth + 1));
      return tpl::Value::list(std::move(items));
    }
    case ordered_json::value_t::object: {
      tpl::Dict d;
      for (const auto& [k, v] : j.items()) d.set(k, to_value(v, depth + 1));
      return tpl::Value::dict(std::move(d));
    }
    default: return tpl::Value::none();
  }
}

// A special token in tokenizer_config.json: a string, or an AddedToken object {"content": ...}.
std::string token_text(const ordered_json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  return {};
}

std::shared_ptr<ChatTemplate::Impl> parse_template(std::string text, std::string name) {
  auto impl = std::make_shared<ChatTemplate::Impl>();
  impl->source = std::move(text);
  impl->name = std::move(name);
  impl->root = tpl::parse(tpl::lex(impl->source, impl->name), impl->name);
  return impl;
}

}  // namespace

ChatTemplate::ChatTemplate(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}

ChatTemplate ChatTemplate::from_string(std::string text, std::string source_name) {
  return ChatTemplate(parse_template(std::move(text), std::move(source_name)));
}

ChatTemplate ChatTemplate::from_model_dir(const std::filesystem::path& dir) {
  const auto config_path = dir / "tokenizer_config.json";
  ordered_json config = ordered_json::object();
  if (std::filesystem::exists(config_path)) {
    try {
      config = ordered_json::parse(read_file(config_path));
    } catch (const ordered_json::exception& e) {
      throw Error(ErrorKind::model_format, config_path.string(), std::string("invalid JSON: ") + e.what());
    }
    if (!config.is_object()) throw Error(ErrorKind::model_format, config_path.string(), "expected a JSON object");
  }
  std::shared_ptr<Impl> impl;
  const auto jinja_path = dir / "chat_template.jinja";
  if (std::filesystem::exists(jinja_path)) {
    impl = parse_template(read_file(jinja_path), jinja_path.string());
  } else {
    if (!std::filesystem::exists(config_path))
      throw Error(ErrorKind::io, config_path.string(), "no tokenizer_config.json or chat_template.jinja in the model directory");
    const std::string where = config_path.string() + ": field 'chat_template'";
    if (!config.contains("chat_template") || config["chat_template"].is_null())
      throw Error(ErrorKind::model_format, where, "the model has no chat template");
    const ordered_json& ct = config["chat_template"];
    std::string text;
    if (ct.is_string()) {
      text = ct.get<std::string>();
    } else if (ct.is_array()) {
      bool found = false;
      for (const auto& entry : ct)
        if (entry.is_object() && entry.value("name", "") == "default" && entry.contains("template") &&
            entry["template"].is_string()) {
          text = entry["template"].get<std::string>();
          found = true;
        }
      if (!found) throw Error(ErrorKind::model_format, where, "no template named 'default' in the list");
    } else {
      throw Error(ErrorKind::model_format, where, "expected a string or a list of {name, template}");
    }
    impl = parse_template(std::move(text), where);
  }
  for (const char* key : {"bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"}) {
    if (!config.contains(key)) continue;
    const std::string t = token_text(config[key]);
    if (config[key].is_null() || t.empty()) continue;
    impl->special_tokens[key] = t;
  }
  impl->bos = impl->special_tokens.value("bos_token", "");
  impl->eos = impl->special_tokens.value("eos_token", "");
  return ChatTemplate(std::move(impl));
}

std::string ChatTemplate::render(const ordered_json& context) const {
  if (!context.is_object() && !context.is_null())
    throw Error(ErrorKind::invalid_input, impl_->name, "the template context must be a JSON object");
  tpl::Dict vars;
  if (context.is_object())
    for (const auto& [k, v] : context.items()) vars.set(k, to_value(v));
  return tpl::render(impl_->root, impl_->name, std::move(vars));
}

std::string ChatTemplate::apply(const ordered_json& messages, bool add_generation_prompt, const ordered_json& extra) const {
  if (!messages.is_array()) throw Error(ErrorKind::invalid_input, "messages", "expected a list of messages");
  if (!extra.is_null() && !extra.is_object()) throw Error(ErrorKind::invalid_input, "chat template variables", "expected a JSON object");
  ordered_json ctx = impl_->special_tokens;
  ctx["tools"] = nullptr;
  ctx["documents"] = nullptr;
  if (extra.is_object())
    for (const auto& [k, v] : extra.items()) ctx[k] = v;
  ctx["messages"] = messages;
  ctx["add_generation_prompt"] = add_generation_prompt;
  return render(ctx);
}

std::string ChatTemplate::apply(const ordered_json& messages, bool add_generation_prompt) const {
  return apply(messages, add_generation_prompt, ordered_json::object());
}

const std::string& ChatTemplate::source() const { return impl_->source; }
const std::string& ChatTemplate::bos_token() const { return impl_->bos; }
const std::string& ChatTemplate::eos_token() const { return impl_->eos; }

}  // namespace lmlab
