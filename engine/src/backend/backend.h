// Backend: where a model's layers run. Model::Impl owns one; a Session's KvSequence holds the per-layer KV
// caches the model made, some of which the backend may own (device-resident pages). The CPU backend is the
// reference: it runs the shared Transformer over host caches. A device backend (CUDA) keeps its weights in
// their stored format in device memory and runs its first `device_layers()` layers there; the remaining
// layers (the --gpu-layers split) and everything backend-free (ModelSpec, WeightStore, tokenizer, prompt
// cache bookkeeping, sampler) stay shared.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "kv/kv_sequence.h"
#include "lmlab/model.h"

namespace lmlab {

class Transformer;

// Device memory as the backend's allocator counts it, and the driver's view of the same device.
struct DeviceMemory {
  uint64_t current_bytes = 0, peak_bytes = 0;  // held by this backend's allocations
  uint64_t driver_used_bytes = 0;               // total - free from the driver (all processes, all contexts)
  uint64_t driver_total_bytes = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;

  virtual Device device() const = 0;
  // Layers [0, device_layers()) run on the device; the rest on the CPU (0 for the CPU backend).
  virtual int64_t device_layers() const { return 0; }

  // The KV cache of `layer` for a new sequence when the backend keeps it (device pages), or null: the
  // model then makes its host cache for that layer.
  virtual std::unique_ptr<KvLayerCache> make_kv_layer(int64_t layer, const KvGeometry& geo) const { return nullptr; }

  // Runs tokens at positions [pos0, pos0 + n) with the cache holding positions [0, pos0).
  // logits: [n, vocab] when all_logits, else [1, vocab] for the last token (host memory).
  virtual void forward(std::span<const int32_t> tokens, int64_t pos0, KvSequence& cache, bool all_logits,
                       std::vector<float>& logits) const = 0;

  virtual DeviceMemory memory() const { return {}; }
};

// Empty when `device` can run models here, else why not ("this build has no CUDA backend", "no CUDA device:
// <driver's message>"): GPU tests skip visibly with it.
std::string device_unavailable_reason(Device device);

// The backend `options.device` names over the loaded host model (the CPU reference and the shared weights).
// Throws unsupported naming --device when this build or machine has no such device.
std::unique_ptr<Backend> make_backend(const ModelOptions& options, const Transformer& transformer);

}  // namespace lmlab
