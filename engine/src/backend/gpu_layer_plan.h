// How many of a model's layers a device can hold (--gpu-layers 0, the default: as many as fit). Layers go to the
// device in order, each costing its weights plus its KV at the context size, while they fit in the free memory
// left after what is resident whatever the split (embedding, head, scratch, a reserve for the runtime).
#pragma once

#include <cstdint>
#include <span>
#include <string>

namespace lmlab {

struct GpuLayerPlan {
  int64_t layers = 0;            // layers [0, layers) on the device
  uint64_t free_bytes = 0;       // the driver's free memory before loading
  uint64_t fixed_bytes = 0;      // resident whatever the split
  uint64_t layer_bytes = 0;      // weights + KV of the planned layers
  std::string to_text() const;   // "28 of 36 layers (61.2 GiB of 64.0 GiB free)"
};

// layer_bytes[l]: weights + KV of layer l. A plan of 0 layers means not even the fixed part fits.
GpuLayerPlan plan_gpu_layers(std::span<const uint64_t> layer_bytes, uint64_t fixed_bytes, uint64_t free_bytes);

}  // namespace lmlab
