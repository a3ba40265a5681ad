// Chat templates: the Jinja2 template a Hugging Face model ships ("chat_template" in
// tokenizer_config.json, or chat_template.jinja) turned into prompt text exactly as transformers'
// apply_chat_template renders it (jinja2 with trim_blocks, lstrip_blocks, loopcontrols, raise_exception
// and strftime_now; tojson as json.dumps with ensure_ascii=False).
// A ChatTemplate is immutable after loading; render/apply are thread-safe.
#pragma once

#include <filesystem>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>

namespace lmlab {

class ChatTemplate {
 public:
  // Reads DIR/chat_template.jinja if present, else "chat_template" of DIR/tokenizer_config.json (a string,
  // or a list of {"name", "template"} from which "default" is taken), plus the special tokens there.
  // Throws lmlab::Error: io (unreadable file), model_format (no template, bad JSON), invalid_input
  // (template syntax error naming line and column).
  static ChatTemplate from_model_dir(const std::filesystem::path& dir);
  // Parses template text; `source_name` names it in error messages.
  static ChatTemplate from_string(std::string text, std::string source_name = "chat_template");

  // Renders with `context` (a JSON object) as the template's variables. Keys keep their order (dicts
  // in tojson output follow it), so pass an ordered_json parsed from the request when order matters.
  // Throws lmlab::Error(invalid_input) for template errors; a raise_exception(msg) in the template gives
  // a message ending in msg.
  std::string render(const nlohmann::ordered_json& context) const;

  // transformers' apply_chat_template(messages, add_generation_prompt=..., **extra): the context is
  // bos_token/eos_token/... from tokenizer_config.json, tools=None, documents=None, then `extra`
  // (overriding), then messages and add_generation_prompt.
  std::string apply(const nlohmann::ordered_json& messages, bool add_generation_prompt,
                    const nlohmann::ordered_json& extra) const;
  std::string apply(const nlohmann::ordered_json& messages, bool add_generation_prompt) const;

  const std::string& source() const;
  // Special tokens read from tokenizer_config.json ("" when absent or null).
  const std::string& bos_token() const;
  const std::string& eos_token() const;

  struct Impl;

 private:
  explicit ChatTemplate(std::shared_ptr<const Impl> impl);
  std::shared_ptr<const Impl> impl_;
};

}  // namespace lmlab
