// The CPU backend: the shared Transformer over host KV caches (the reference every other backend is
// tested against).
#include "backend/backend_cpu.h"

#include "forward/transformer.h"

#include <vector>

#include "util/thread_pool.h"

namespace lmlab {

namespace {

// The resident Linears laid out for the decode kernels at load (4-bit panels: linear_affine.cpp; dense matrices in
// huge pages: linear_dense.cpp), and their mapped pages let go (drop_stored_pages: decode and prefill read only the
// copies), so the copies replace the weights in memory instead of doubling them (0.5 GB 4-bit synth: max RSS 609 MB,
// 602 MB without panels, 1036 MB before the drop). The matrices are prepared on every thread, one matrix per task.
// Not the MoE experts: on the panels they decode and prefill faster, but every expert would be read at load where
// decoding pages in only those it routes to, and the load took 3-4x longer (docs/quantization.md).
void prepare_decode(const Transformer& t) {
  std::vector<const Linear*> all;
  auto add = [&](const std::unique_ptr<Linear>& l) {
    if (l) all.push_back(l.get());
  };
  auto add_mlp = [&](const MlpWeights& m) {
    add(m.gate);
    add(m.up);
    add(m.down);
  };
  for (const LayerWeights& w : t.layer_weights()) {
    for (const auto* l : {&w.q, &w.k, &w.v, &w.o}) add(*l);
    add_mlp(w.mlp);
    add(w.moe.router);
  }
  all.push_back(&t.lm_head_weight());
  // A failure (an allocation refused) comes back from parallel_for on this thread, and the load fails with it.
  ThreadPool::global().parallel_for(static_cast<int64_t>(all.size()), [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      all[static_cast<size_t>(i)]->prepare_decode();
      all[static_cast<size_t>(i)]->drop_stored_pages(t.store());
    }
  });
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
