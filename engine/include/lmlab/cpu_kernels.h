// Which instruction set the engine's CPU kernels take in this process, for the lab's records: results computed
// under another ISA sum in another order (a near-tied greedy token may go either way), and run at another speed.
#pragma once

namespace lmlab {

// "avx512", "avx2" or "scalar": the best this machine supports, or lower where LMLAB_ISA forces it.
const char* cpu_kernels_isa();

}  // namespace lmlab
