// What a full-attention layer's KV cache actually stores, which is not always what --kv-mode asked for: the CUDA
// backend's attention kernels read f16 blocks, so a device layer keeps the plain modes (f32, f16) as f16 rows,
// while the compressed modes (turbo, affine4, affine8) store the same records on both devices (docs/cuda.md).
// The model chooses its per-layer KV specs by this rule (model.cpp), and the reports label configs with it.
#pragma once

#include "lmlab/options.h"

namespace lmlab {

// The storage of a full-attention layer that runs on `layer_device` under `requested` (sliding-window layers on
// the CPU stay f32 whatever the mode; on the GPU they are f16).
KvMode kv_mode_stored(KvMode requested, Device layer_device);

}  // namespace lmlab
