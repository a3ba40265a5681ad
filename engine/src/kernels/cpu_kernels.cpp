// lmlab/cpu_kernels.h: the CPU kernels' dispatch (kernels/cpu/isa.h) named for the lab's records.
#include "lmlab/cpu_kernels.h"

#include "kernels/kernels.h"

namespace lmlab {

const char* cpu_kernels_isa() { return kernels::cpu::isa_name(); }

}  // namespace lmlab
