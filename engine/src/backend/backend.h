// Backend: where a model's layers run. Model::Impl owns one; a Session's KvSequence holds the per-layer KV
// layers (kv/kv_layer_blocked.h) the model made. The CPU backend is the reference: it runs the shared Transformer
// over host KV blocks. A device backend (CUDA) keeps its weights in their stored format in device memory and runs
// its first `device_layers()` layers there, over KV layers whose blocks come from its kv_allocator() (device
// memory) in the same block layout: the block tables, copy-on-write, prompt cache, sliding-window release and byte
// accounting stay the kv/ code's, and the device kernels read and write the blocks. The remaining layers (the
// --gpu-layers split) and everything backend-free (ModelSpec, WeightStore, tokenizer, sampler) stay shared.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "forward/sequence_step.h"
#include "kv/kv_block_allocator.h"
#include "kv/kv_sequence.h"
#include "lmlab/options.h"
#include "lmlab/stream_counters.h"

namespace lmlab {

class Transformer;

// Device memory as the backend's allocator counts it, and the driver's view of the same device.
struct DeviceMemory {
  uint64_t current_bytes = 0, peak_bytes = 0;  // held by this backend's allocations
  uint64_t driver_used_bytes = 0;               // total - free from the driver (all processes, all contexts)
  uint64_t driver_total_bytes = 0;
};

// The device's busy time in replayed decode steps (CUDA graphs): events around each replay, so the host's work between
// steps (the pick, the launch) is not in it.
struct DeviceDecodeTime {
  uint64_t steps = 0, ns = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;

  virtual Device device() const = 0;
  // Layers [0, device_layers()) run on the device; the rest on the CPU (0 for the CPU backend).
  virtual int64_t device_layers() const { return 0; }
  // How the device layers were chosen when --gpu-layers was 0 ("" otherwise).
  virtual std::string device_plan() const { return {}; }
  // The memory of the device layers' KV blocks (null: host memory). Their layer specs store f16 records without
  // a rotation or hot window: what the device kernels write and attend over.
  virtual std::shared_ptr<KvBlockAllocator> kv_allocator() const { return nullptr; }

  // Runs tokens at positions [pos0, pos0 + n) with the cache holding positions [0, pos0).
  // logits: [n, vocab] when all_logits, else [1, vocab] for the last token (host memory).
  virtual void forward(std::span<const int32_t> tokens, int64_t pos0, KvSequence& cache, bool all_logits,
                       std::vector<float>& logits) const = 0;

  // Prompt tokens Session::append hands to one forward() call (prefill_size: chunks of the option's size). A
  // backend may take more and split them itself (CudaBackend with streamed experts: layer by layer over the prompt).
  virtual int64_t prompt_span(int64_t prefill_size, bool /*all_logits*/) const { return prefill_size; }

  // Several sequences in one step (continuous batching): logits [steps, vocab], each sequence's last token.
  // The default runs them one after another (a backend without a batched path: same results, no sharing of
  // weight reads); the CPU backend reads each weight matrix once for all of them.
  virtual void forward_batch(std::span<const SequenceStep> steps, std::vector<float>& logits) const;

  virtual DeviceMemory memory() const { return {}; }
  virtual DeviceDecodeTime decode_time() const { return {}; }
  // --stream-experts: the device's share of the streaming counters (its VRAM expert cache), added to the host
  // streamer's. Nothing on backends without one.
  virtual void add_stream_counters(StreamCounters& /*c*/) const {}
};

}  // namespace lmlab
