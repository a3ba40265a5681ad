// The CPU backend: the shared Transformer over host KV caches (the reference every other backend is
// tested against).
#include "backend/backend_cpu.h"

#include "forward/transformer.h"

namespace lmlab {

namespace {

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(const Transformer& t) : t_(t) {}
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
