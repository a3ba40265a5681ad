// The CPU backend: the shared Transformer over host KV caches (the reference every other backend is
// tested against).
#include "backend/backend_cpu.h"

#include "forward/transformer.h"

namespace lmlab {

namespace {

// The resident Linears laid out for the decode kernels at load (4-bit panels: linear_affine.cpp), and their mapped
// pages let go (drop_stored_pages: decode and prefill read only the panels), so the panels replace the weights in
// memory instead of doubling them (0.5 GB 4-bit synth: max RSS 609 MB, 602 MB without panels, 1036 MB before the
// drop). Not the MoE experts, for now: they keep the row-layout kernel, as streamed experts do (their repack was
// left out while it doubled a resident MoE's memory and has not been measured since).
void prepare_decode(const Transformer& t) {
  auto prep_linear = [&](const Linear& l) {
    l.prepare_decode();
    l.drop_stored_pages(t.store());
  };
  auto prep = [&](const std::unique_ptr<Linear>& l) {
    if (l) prep_linear(*l);
  };
  auto prep_mlp = [&](const MlpWeights& m) {
    prep(m.gate);
    prep(m.up);
    prep(m.down);
  };
  for (const LayerWeights& w : t.layer_weights()) {
    for (const auto* l : {&w.q, &w.k, &w.v, &w.o}) prep(*l);
    prep_mlp(w.mlp);
    prep(w.moe.router);
  }
  prep_linear(t.lm_head_weight());
}

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(const Transformer& t) : t_(t) { prepare_decode(t); }
  Device device() const override { return Device::cpu; }
  void forward(std::span<const int32_t> tokens, int64_t pos0, KvSequence& cache, bool all_logits,
               std::vector<float>& logits) const override {
    t_.forward(tokens, pos0, cache, all_logits, logits);
  }
  void forward_batch(std::span<const SequenceStep> steps, std::vector<float>& logits) const override {
    t_.forward_batch(steps, logits);
  }

 private:
  const Transformer& t_;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(const Transformer& transformer) {
  return std::make_unique<CpuBackend>(transformer);
}

}  // namespace lmlab
