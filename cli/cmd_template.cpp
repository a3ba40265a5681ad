// lmlab template --template FILE.jinja | --model DIR  --context FILE.json: renders a chat template.
// The context is a JSON object with messages, tools, add_generation_prompt, bos_token, eos_token and
// any extra variables. With --model, the model's special tokens (and tools=None, documents=None) are
// filled in first, as transformers' apply_chat_template does; the context's keys override them.
// Prints the text to stdout; a template error goes to stderr with exit code 1.
#include <fmt/format.h>

#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "common.h"
#include "lmlab/chat_template.h"

namespace lmlab::cli {

namespace {

struct Flags {
  std::string template_file;
  std::string model;
  std::string context_file;
};

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorKind::io, path, "cannot open file");
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

int run_template(const Flags& fl) {
  if (fl.template_file.empty() == fl.model.empty())
    throw Error(ErrorKind::invalid_input, "--template/--model", "give exactly one of --template FILE or --model DIR");
  nlohmann::ordered_json context = nlohmann::ordered_json::object();
  if (!fl.context_file.empty()) {
    try {
      context = nlohmann::ordered_json::parse(read_text(fl.context_file));
    } catch (const nlohmann::ordered_json::exception& e) {
      throw Error(ErrorKind::invalid_input, fl.context_file, std::string("invalid JSON: ") + e.what());
    }
    if (!context.is_object()) throw Error(ErrorKind::invalid_input, fl.context_file, "expected a JSON object");
  }
  std::string text;
  if (!fl.model.empty()) {
    const ChatTemplate t = ChatTemplate::from_model_dir(fl.model);
    nlohmann::ordered_json extra = context;
    extra.erase("messages");
    extra.erase("add_generation_prompt");
    const nlohmann::ordered_json messages = context.value("messages", nlohmann::ordered_json::array());
    const bool agp = context.contains("add_generation_prompt") && context["add_generation_prompt"].is_boolean() &&
                     context["add_generation_prompt"].get<bool>();
    text = t.apply(messages, agp, extra);
  } else {
    text = ChatTemplate::from_string(read_text(fl.template_file), fl.template_file).render(context);
  }
  fmt::print("{}", text);
  return 0;
}

}  // namespace

void register_template(CLI::App& app) {
  auto fl = std::make_shared<Flags>();
  auto* sub = app.add_subcommand("template", "render a chat template (for debugging a model's template)");
  sub->add_option("--template", fl->template_file, "a Jinja template file");
  sub->add_option("--model", fl->model, "a model directory (chat_template.jinja or tokenizer_config.json)");
  sub->add_option("--context", fl->context_file, "a JSON object: messages, tools, add_generation_prompt, ...");
  sub->callback(guarded([fl] { return run_template(*fl); }));
}

}  // namespace lmlab::cli
