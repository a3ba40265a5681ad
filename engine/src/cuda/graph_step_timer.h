// The GPU's time for each replayed decode graph: events recorded around the launch, read back at the next step or
// when asked (the step's logits have been waited for by then, so the read does not wait). Set against a step's wall time it says
// how much of a decode step the GPU works and how much it waits for the host (the pick, the next launch).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace lmlab::cuda {

class GraphStepTimer {
 public:
  GraphStepTimer();
  GraphStepTimer(const GraphStepTimer&) = delete;
  GraphStepTimer& operator=(const GraphStepTimer&) = delete;
  ~GraphStepTimer();

  // Around one graph launch on `stream`: begin() before it, end() after it.
  void begin(cudaStream_t stream);
  void end(cudaStream_t stream);

  // Steps timed so far and their GPU nanoseconds.
  uint64_t steps();
  uint64_t nanoseconds();

 private:
  void fold();  // adds the last begin/end pair

  cudaEvent_t begin_ = nullptr, end_ = nullptr;
  bool pending_ = false;
  uint64_t steps_ = 0, ns_ = 0;
};

}  // namespace lmlab::cuda
