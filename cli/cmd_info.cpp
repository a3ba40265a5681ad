// lmlab info --model DIR [--json]: what the model is, what lmlab made of its config, and the engine options it
// would run with. lmlab info --list-options: the engine's option table (flag, scenario key, range, default, doc).
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <nlohmann/json.hpp>

#include "common.h"
#include "lmlab/iobench.h"
#include "lmlab/memory_plan.h"
#include "lmlab/results.h"

namespace lmlab::cli {

namespace {

struct Flags {
  EngineFlags engine;
  bool json = false;
  bool list_options = false;
  bool measure_ssd = false;  // ~1 s O_DIRECT random reads of the largest shard for the estimate
  double ssd_gbps = 0, mem_gbps = 0;
};

// The memory plan of DESIGN.md / issue 6: strategy, bytes against available RAM, estimated decode tok/s.
nlohmann::json memory_plan_json(const Flags& fl) {
  const ModelOptions options = fl.engine.options();
  MemoryPlanOptions po;
  po.stream_experts = options.stream_experts;
  po.expert_cache_mb = options.expert_cache_mb;
  po.ctx_size = options.ctx_size;
  double ssd_bytes_per_second = fl.ssd_gbps * 1e9;
  if (fl.measure_ssd) {
    std::filesystem::path largest;
    uint64_t largest_bytes = 0;
    for (const auto& e : std::filesystem::directory_iterator(fl.engine.model))
      if (e.path().extension() == ".safetensors" && e.file_size() > largest_bytes) {
        largest = e.path();
        largest_bytes = e.file_size();
      }
    IoBenchOptions io;
    io.file = largest;
    io.read_bytes = 512 << 10;
    io.seconds = 1.0;
    if (largest_bytes >= io.read_bytes) {
      const IoBenchResult r = run_iobench(io);
      ssd_bytes_per_second = per_second(static_cast<double>(r.bytes), r.seconds);
    }
  }
  const MemoryPlan plan = plan_memory(fl.engine.model, po);
  nlohmann::json j = nlohmann::json::parse(plan.to_json());
  const double mem_bytes_per_second = fl.mem_gbps * 1e9;
  const DecodeEstimate est =
      estimate_decode(plan.bytes_per_token, plan.ssd_bytes_per_token, mem_bytes_per_second, ssd_bytes_per_second);
  j["ssd_bytes_per_second"] = ssd_bytes_per_second;
  j["memory_bytes_per_second"] = mem_bytes_per_second;
  j["est_decode_tok_s"] = est.tok_s > 0 ? nlohmann::json(est.tok_s) : nlohmann::json();
  j["est_basis"] = est.basis;
  return j;
}

// One line per option of the table (test-only options last, marked).
int list_options() {
  for (bool test_only : {false, true})
    for (const OptionSpec& s : engine_options()) {
      if (s.test_only != test_only) continue;
      std::string range;
      if (s.type == OptionType::integer) range = fmt::format("{}..{}{}", s.min, s.max, s.unit.empty() ? "" : " " + std::string(s.unit));
      if (s.type == OptionType::choice) range = fmt::format("{}", fmt::join(s.choices, " | "));
      if (s.type == OptionType::boolean) range = s.negated_flag ? "flag (turns it off)" : "flag";
      fmt::print("{:<24} {:<20} {:<28} default: {}. {}\n", s.flag, s.key, range, describe_option_default(s), s.doc);
    }
  for (const OptionAlias& a : engine_option_aliases())
    fmt::print("{:<24} = {} {}. {}\n", a.flag, engine_option(a.key).flag, a.value, a.doc);
  return 0;
}

int run_info(const Flags& fl) {
  if (fl.list_options) return list_options();
  if (fl.engine.model.empty()) throw Error(ErrorKind::invalid_input, "--model", "is required (or --list-options)");
  auto model = Model::load(fl.engine.model, fl.engine.options());
  const ModelInfo& i = model->info();
  nlohmann::json j = {{"arch", i.arch},         {"dir", i.dir.string()},        {"vocab", i.vocab},
                      {"hidden", i.hidden},     {"layers", i.n_layers},         {"heads", i.n_heads},
                      {"kv_heads", i.n_kv_heads}, {"head_dim", i.head_dim},     {"experts", i.n_experts},
                      {"top_k", i.top_k},       {"max_positions", i.max_positions}, {"ctx_size", i.ctx_size},
                      {"weight_bytes", i.weight_bytes}, {"weight_format", i.weight_format},
                      {"layer_windows", i.layer_windows}, {"ignored_config_keys", i.ignored_config_keys},
                      {"options", nlohmann::json::parse(options_to_json_text(model->options()))},
                      {"memory_plan", memory_plan_json(fl)}};
  if (model->options().device != Device::cpu) {  // the device's plan and what the load actually holds there
    const ModelCounters c = model->counters();
    j["device"] = {{"layers_on_device", i.device_layers},
                   {"layers_on_cpu", i.n_layers - i.device_layers},
                   {"plan", i.device_plan},
                   {"memory_bytes", c.device_memory_bytes},
                   {"memory_peak_bytes", c.device_memory_peak_bytes}};
  }
  if (fl.json) {
    fmt::print("{}\n", j.dump());
    return 0;
  }
  for (auto& [k, v] : j.items())
    if (k != "memory_plan" && k != "options") fmt::print("{:<22} {}\n", k, v.dump());
  fmt::print("options:\n");
  for (const OptionSpec& s : engine_options())
    if (!s.test_only) fmt::print("  {:<24} {}\n", s.key, describe_option_value(s, get_option(model->options(), s)));
  fmt::print("memory plan:\n");
  for (auto& [k, v] : j["memory_plan"].items()) fmt::print("  {:<24} {}\n", k, v.dump());
  return 0;
}

}  // namespace

void register_info(CLI::App& app) {
  auto fl = std::make_shared<Flags>();
  auto* sub = app.add_subcommand("info", "describe a model directory");
  fl->engine.add_to(*sub, /*model_required=*/false);
  sub->add_flag("--list-options", fl->list_options, "print the engine's option table and exit");
  sub->add_flag("--json", fl->json, "one JSON object");
  sub->add_flag("--measure-ssd", fl->measure_ssd, "measure the drive (1 s of O_DIRECT reads) for the decode estimate");
  sub->add_option("--ssd-gbps", fl->ssd_gbps, "drive bandwidth for the decode estimate (GB/s)");
  sub->add_option("--mem-gbps", fl->mem_gbps, "memory bandwidth for the decode estimate (GB/s)");
  sub->callback(guarded([fl] { return run_info(*fl); }));
}

}  // namespace lmlab::cli
