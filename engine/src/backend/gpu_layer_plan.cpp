// plan_gpu_layers (see gpu_layer_plan.h).
#include "backend/gpu_layer_plan.h"

#include <fmt/format.h>

namespace lmlab {

GpuLayerPlan plan_gpu_layers(std::span<const uint64_t> layer_bytes, uint64_t fixed_bytes, uint64_t free_bytes) {
  GpuLayerPlan p;
  p.free_bytes = free_bytes;
  p.fixed_bytes = fixed_bytes;
  if (fixed_bytes > free_bytes) return p;
  uint64_t left = free_bytes - fixed_bytes;
  for (uint64_t b : layer_bytes) {
    if (b > left) break;
    left -= b;
    p.layer_bytes += b;
    ++p.layers;
  }
  return p;
}

std::string GpuLayerPlan::to_text() const {
  return fmt::format("{} layers ({:.1f} GiB of weights and KV + {:.1f} GiB resident, {:.1f} GiB free)", layers,
                     layer_bytes / 1073741824.0, fixed_bytes / 1073741824.0, free_bytes / 1073741824.0);
}

}  // namespace lmlab
