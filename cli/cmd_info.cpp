// lmlab info --model DIR [--json]: what the model is and what lmlab made of its config.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <nlohmann/json.hpp>

#include "common.h"
#include "lmlab/iobench.h"
#include "lmlab/memory_plan.h"

namespace lmlab::cli {

namespace {

struct Flags {
  EngineFlags engine;
  bool json = false;
  bool measure_ssd = false;  // ~1 s O_DIRECT random reads of the largest shard for the estimate
  double ssd_gbps = 0, mem_gbps = 0;
};

// The memory plan of DESIGN.md / issue 6: strategy, bytes against available RAM, estimated decode tok/s.
nlohmann::json memory_plan_json(const Flags& fl) {
  MemoryPlanOptions po;
  po.stream_experts = fl.engine.stream_experts;
  po.expert_cache_mb = fl.engine.expert_cache_mb;
  po.ctx_size = fl.engine.ctx_size;
  po.ssd_bytes_per_second = fl.ssd_gbps * 1e9;
  po.memory_bytes_per_second = fl.mem_gbps * 1e9;
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
    if (largest_bytes >= io.read_bytes) po.ssd_bytes_per_second = run_iobench(io).bytes_per_second;
  }
  return nlohmann::json::parse(plan_memory(fl.engine.model, po).to_json());
}

int run_info(const Flags& fl) {
  auto model = Model::load(fl.engine.model, fl.engine.options());
  const ModelInfo& i = model->info();
  nlohmann::json j = {{"arch", i.arch},         {"dir", i.dir.string()},        {"vocab", i.vocab},
                      {"hidden", i.hidden},     {"layers", i.n_layers},         {"heads", i.n_heads},
                      {"kv_heads", i.n_kv_heads}, {"head_dim", i.head_dim},     {"experts", i.n_experts},
                      {"top_k", i.top_k},       {"max_positions", i.max_positions}, {"ctx_size", i.ctx_size},
                      {"weight_bytes", i.weight_bytes}, {"weight_format", i.weight_format},
                      {"layer_windows", i.layer_windows}, {"ignored_config_keys", i.ignored_config_keys},
                      {"memory_plan", memory_plan_json(fl)}};
  if (fl.json) {
    fmt::print("{}\n", j.dump());
    return 0;
  }
  for (auto& [k, v] : j.items())
    if (k != "memory_plan") fmt::print("{:<22} {}\n", k, v.dump());
  fmt::print("memory plan:\n");
  for (auto& [k, v] : j["memory_plan"].items()) fmt::print("  {:<24} {}\n", k, v.dump());
  return 0;
}

}  // namespace

void register_info(CLI::App& app) {
  auto fl = std::make_shared<Flags>();
  auto* sub = app.add_subcommand("info", "describe a model directory");
  fl->engine.add_to(*sub);
  sub->add_flag("--json", fl->json, "one JSON object");
  sub->add_flag("--measure-ssd", fl->measure_ssd, "measure the drive (1 s of O_DIRECT reads) for the decode estimate");
  sub->add_option("--ssd-gbps", fl->ssd_gbps, "drive bandwidth for the decode estimate (GB/s)");
  sub->add_option("--mem-gbps", fl->mem_gbps, "memory bandwidth for the decode estimate (GB/s)");
  sub->callback(guarded([fl] { return run_info(*fl); }));
}

}  // namespace lmlab::cli
