#include "cuda/graph_step_timer.h"

#include "cuda/cuda_check.h"

namespace lmlab::cuda {

GraphStepTimer::GraphStepTimer() {
  check(cudaEventCreate(&begin_), "step timer event");
  if (const cudaError_t e = cudaEventCreate(&end_); e != cudaSuccess) {
    cudaEventDestroy(begin_);  // the destructor does not run for a constructor that throws
    check(e, "step timer event");
  }
}

GraphStepTimer::~GraphStepTimer() {
  cudaEventDestroy(begin_);
  cudaEventDestroy(end_);
}

void GraphStepTimer::begin(cudaStream_t stream) {
  fold();  // the previous pair, before its events are recorded again
  check(cudaEventRecord(begin_, stream), "step timer");
}

void GraphStepTimer::end(cudaStream_t stream) {
  check(cudaEventRecord(end_, stream), "step timer");
  pending_ = true;
}

void GraphStepTimer::fold() {
  if (!pending_) return;
  pending_ = false;
  // The step's logits were waited for, so this returns at once. (A query's "not ready" would stay behind as the
  // runtime's last error for the next launch check to find.)
  float ms = 0.0f;
  if (cudaEventSynchronize(end_) == cudaSuccess && cudaEventElapsedTime(&ms, begin_, end_) == cudaSuccess) {
    ++steps_;
    ns_ += static_cast<uint64_t>(static_cast<double>(ms) * 1e6);
  }
}

uint64_t GraphStepTimer::steps() {
  fold();
  return steps_;
}

uint64_t GraphStepTimer::nanoseconds() {
  fold();
  return ns_;
}

}  // namespace lmlab::cuda
