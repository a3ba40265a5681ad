// Typed, error-reporting access to tokenizer.json fields. Every failure throws lmlab::Error whose
// `where` is the file and whose message starts with the JSON path of the field, e.g.
// "pre_tokenizer.pretokenizers[1].type 'Foo' is not supported".
// Invariant: a null field is treated as absent (tokenizer.json writes `null` for unset options).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "lmlab/error.h"
#include "tokenizer/pattern.h"

namespace lmlab::tok {

using json = nlohmann::json;

// Where in which file a JSON value sits.
struct JsonCtx {
  std::string file;  // e.g. "tokenizer.json" or the full path
  std::string path;  // e.g. "pre_tokenizer.pretokenizers[1]"

  JsonCtx at(std::string_view key) const {
    return {file, path.empty() ? std::string(key) : path + "." + std::string(key)};
  }
  JsonCtx at(size_t index) const { return {file, path + "[" + std::to_string(index) + "]"}; }

  [[noreturn]] void fail(ErrorKind kind, const std::string& what) const { throw Error(kind, file, path + " " + what); }
  [[noreturn]] void unsupported_type(const std::string& type) const {
    at("type").fail(ErrorKind::unsupported, "'" + type + "' is not supported");
  }
};

inline const json* find_field(const json& obj, std::string_view key) {
  if (!obj.is_object()) return nullptr;
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

inline const json& require_object(const json& v, const JsonCtx& ctx) {
  if (!v.is_object()) ctx.fail(ErrorKind::model_format, "must be an object");
  return v;
}

inline const json& require_field(const json& obj, std::string_view key, const JsonCtx& ctx) {
  const json* v = find_field(require_object(obj, ctx), key);
  if (v == nullptr) ctx.at(key).fail(ErrorKind::model_format, "is missing");
  return *v;
}

inline std::string get_string(const json& obj, std::string_view key, const JsonCtx& ctx) {
  const json& v = require_field(obj, key, ctx);
  if (!v.is_string()) ctx.at(key).fail(ErrorKind::model_format, "must be a string");
  return v.get<std::string>();
}

inline std::string get_string_or(const json& obj, std::string_view key, std::string fallback, const JsonCtx& ctx) {
  const json* v = find_field(obj, key);
  if (v == nullptr) return fallback;
  if (!v->is_string()) ctx.at(key).fail(ErrorKind::model_format, "must be a string");
  return v->get<std::string>();
}

inline bool get_bool_or(const json& obj, std::string_view key, bool fallback, const JsonCtx& ctx) {
  const json* v = find_field(obj, key);
  if (v == nullptr) return fallback;
  if (!v->is_boolean()) ctx.at(key).fail(ErrorKind::model_format, "must be a boolean");
  return v->get<bool>();
}

inline int64_t get_int_or(const json& obj, std::string_view key, int64_t fallback, const JsonCtx& ctx) {
  const json* v = find_field(obj, key);
  if (v == nullptr) return fallback;
  if (!v->is_number_integer()) ctx.at(key).fail(ErrorKind::model_format, "must be an integer");
  return v->get<int64_t>();
}

inline const json& get_array(const json& obj, std::string_view key, const JsonCtx& ctx) {
  const json& v = require_field(obj, key, ctx);
  if (!v.is_array()) ctx.at(key).fail(ErrorKind::model_format, "must be an array");
  return v;
}

// The "type" tag of a component object.
inline std::string get_type(const json& obj, const JsonCtx& ctx) { return get_string(obj, "type", ctx); }

// A field holding exactly one character (Metaspace's replacement, Strip's content).
inline std::string get_char(const json& obj, std::string_view key, std::string fallback, const JsonCtx& ctx) {
  std::string s = get_string_or(obj, key, std::move(fallback), ctx);
  size_t len = 0;
  if (!s.empty()) {
    const auto lead = static_cast<unsigned char>(s[0]);
    len = lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4;
  }
  if (s.empty() || len != s.size()) ctx.at(key).fail(ErrorKind::model_format, "must be a single character");
  return s;
}

// A pattern object: {"String": "literal"} or {"Regex": "oniguruma regex"}.
inline Pattern get_pattern(const json& obj, std::string_view key, const JsonCtx& ctx) {
  const JsonCtx pctx = ctx.at(key);
  const json& v = require_object(require_field(obj, key, ctx), pctx);
  if (const json* s = find_field(v, "String")) {
    if (!s->is_string()) pctx.at("String").fail(ErrorKind::model_format, "must be a string");
    return Pattern::literal(s->get<std::string>());
  }
  if (const json* r = find_field(v, "Regex")) {
    if (!r->is_string()) pctx.at("Regex").fail(ErrorKind::model_format, "must be a string");
    return Pattern::regex(r->get<std::string>(), ctx.file + ": " + pctx.path);
  }
  pctx.fail(ErrorKind::unsupported, "must hold \"String\" or \"Regex\"");
}

}  // namespace lmlab::tok
