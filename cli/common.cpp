#include "common.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <iostream>

#include "lmlab/error.h"

namespace lmlab::cli {

namespace {

// "doc [2..5, default 5]", "doc (f32 | turbo | ...; default f32)".
std::string flag_help(const OptionSpec& spec) {
  std::string range;
  if (spec.type == OptionType::integer) range = fmt::format("{}..{}, ", spec.min, spec.max);
  if (spec.type == OptionType::choice) range = fmt::format("{}; ", fmt::join(spec.choices, " | "));
  if (spec.type == OptionType::boolean) return spec.negated_flag ? "turn off: " + std::string(spec.doc) : std::string(spec.doc);
  return fmt::format("{} ({}default {})", spec.doc, range, describe_option_default(spec));
}

}  // namespace

void EngineFlags::add_option(CLI::App& app, const OptionSpec& spec) {
  const std::string key(spec.key), flag(spec.flag);
  CLI::Option* opt = nullptr;
  if (spec.type == OptionType::boolean)
    opt = app.add_flag_callback(flag, [this, key, v = spec.negated_flag ? "false" : "true"] { given_[key] = v; },
                                flag_help(spec));
  else
    opt = app.add_option_function<std::string>(flag, [this, key](const std::string& text) { given_[key] = text; },
                                               flag_help(spec));
  if (spec.type != OptionType::boolean) opt->type_name(spec.type == OptionType::integer ? "INT" : "TEXT");
  if (spec.test_only) opt->group("Test-only");
  for (const OptionAlias& a : engine_option_aliases())
    if (a.key == spec.key)
      app.add_flag_callback(std::string(a.flag), [this, &a] { aliases_given_.push_back(&a); }, std::string(a.doc));
}

void EngineFlags::add_to(CLI::App& app, bool model_required) {
  auto* m = app.add_option("--model", model, "Hugging Face model directory (config.json, *.safetensors)");
  if (model_required) m->required();
  for (const OptionSpec& spec : engine_options()) add_option(app, spec);
}

void EngineFlags::add_options_to(CLI::App& app, std::initializer_list<std::string_view> keys) {
  for (std::string_view key : keys) add_option(app, engine_option(key));
}

bool EngineFlags::given(std::string_view key) const { return given_.find(key) != given_.end(); }

ModelOptions EngineFlags::options() const {
  ModelOptions o;
  for (const OptionAlias* a : aliases_given_) {
    const OptionSpec& spec = engine_option(a->key);
    if (auto it = given_.find(a->key); it != given_.end() && it->second != a->value)
      throw Error(ErrorKind::invalid_input, std::string(spec.flag), fmt::format("conflicts with {}", a->flag));
    set_option(o, spec, parse_option_text(spec, a->value, a->flag), a->flag);
  }
  for (const auto& [key, text] : given_) {
    const OptionSpec& spec = engine_option(key);
    set_option(o, spec, parse_option_text(spec, text));
  }
  return o;
}

int run_guarded(const std::function<int()>& body) {
  try {
    return body();
  } catch (const Error& e) {
    std::cerr << "lmlab: " << e.what() << "\n";
    return error_exit_code(e.kind());
  } catch (const std::exception& e) {
    std::cerr << "lmlab: internal error: " << e.what() << "\n";
    return error_exit_code(ErrorKind::internal);
  }
}

}  // namespace lmlab::cli

namespace lmlab::cli {
std::function<void()> guarded(std::function<int()> body) {
  return [body = std::move(body)] {
    const int rc = run_guarded(body);
    if (rc != 0) throw CLI::RuntimeError(rc);
  };
}
}  // namespace lmlab::cli
