// lmlab info --model DIR [--json]: what the model is and what lmlab made of its config.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <nlohmann/json.hpp>

#include "common.h"

namespace lmlab::cli {

namespace {

struct Flags {
  EngineFlags engine;
  bool json = false;
};

int run_info(const Flags& fl) {
  auto model = Model::load(fl.engine.model, fl.engine.options());
  const ModelInfo& i = model->info();
  nlohmann::json j = {{"arch", i.arch},         {"dir", i.dir.string()},        {"vocab", i.vocab},
                      {"hidden", i.hidden},     {"layers", i.n_layers},         {"heads", i.n_heads},
                      {"kv_heads", i.n_kv_heads}, {"head_dim", i.head_dim},     {"experts", i.n_experts},
                      {"top_k", i.top_k},       {"max_positions", i.max_positions}, {"ctx_size", i.ctx_size},
                      {"weight_bytes", i.weight_bytes}, {"weight_format", i.weight_format},
                      {"layer_windows", i.layer_windows}, {"ignored_config_keys", i.ignored_config_keys}};
  if (fl.json) {
    fmt::print("{}\n", j.dump());
    return 0;
  }
  for (auto& [k, v] : j.items()) fmt::print("{:<22} {}\n", k, v.dump());
  return 0;
}

}  // namespace

void register_info(CLI::App& app) {
  auto fl = std::make_shared<Flags>();
  auto* sub = app.add_subcommand("info", "describe a model directory");
  fl->engine.add_to(*sub);
  sub->add_flag("--json", fl->json, "one JSON object");
  sub->callback(guarded([fl] { return run_info(*fl); }));
}

}  // namespace lmlab::cli
