// What --prefill-size 0 (the default) means, in one place: 512 prompt tokens a forward on the CPU, 2048 on a GPU.
// On the H100 (docs/cuda.md, twenty-first session) chunks of 2048 prefilled a 16K prompt 1.30x (qwen3-8b 4-bit) and
// 1.21x (qwen3-30b-a3b 4-bit) faster than chunks of 512: a 4-bit weight is dequantized once per chunk and an expert's
// slot tiles fill up; 4096 gained 4-5% more for twice the activations. The CPU's chunk stays where its tests and
// measurements are.
#pragma once

#include <cstdint>

#include "lmlab/options.h"

namespace lmlab {

inline constexpr int64_t kCpuPrefillSize = 512, kGpuPrefillSize = 2048;

inline int64_t resolve_prefill_size(int64_t requested, Device device) {
  if (requested > 0) return requested;
  return device == Device::cuda ? kGpuPrefillSize : kCpuPrefillSize;
}

}  // namespace lmlab
