// Runtime CPU-feature detection and the process-wide kernel ISA choice (see isa.h).
#include "kernels/cpu/isa.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "kernels/kernels.h"

namespace lmlab::kernels::cpu {

namespace {

Isa detect() {
#if LMLAB_X86
  // libgcc's __builtin_cpu_supports also checks (XGETBV) that the OS saves the AVX / AVX-512 state.
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("fma"))
    return Isa::avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))
    return Isa::avx2;
#endif
  return Isa::scalar;
}

Isa default_isa() {
  const Isa best = detected_isa();
  Isa cap = best;
  const char* env = std::getenv("LMLAB_ISA");
  if (env == nullptr || *env == '\0') return best;
  if (!parse_isa(env, &cap)) {
    std::fprintf(stderr, "lmlab: LMLAB_ISA=%s is not one of scalar, avx2, avx512; using %s\n", env, isa_name(best));
    return best;
  }
  return static_cast<int>(cap) < static_cast<int>(best) ? cap : best;  // a cap, never above the CPU
}

std::atomic<int>& current() {
  static std::atomic<int> isa{static_cast<int>(default_isa())};
  return isa;
}

}  // namespace

Isa detected_isa() {
  static const Isa best = detect();
  return best;
}

bool has_avx512_vnni() {
#if LMLAB_X86
  static const bool vnni = detected_isa() == Isa::avx512 && __builtin_cpu_supports("avx512vnni");
  return vnni;
#else
  return false;
#endif
}

bool has_avx512_bf16() {
#if LMLAB_X86
  static const bool bf16 = detected_isa() == Isa::avx512 && __builtin_cpu_supports("avx512bf16");
  return bf16;
#else
  return false;
#endif
}

namespace {
std::atomic<bool>& bf16_switch() {
  static std::atomic<bool> on{[] {
    const char* env = std::getenv("LMLAB_BF16_DOT");
    return !(env != nullptr && std::strcmp(env, "0") == 0);
  }()};
  return on;
}
}  // namespace

bool avx512_bf16_enabled() { return has_avx512_bf16() && bf16_switch().load(std::memory_order_relaxed); }

bool set_avx512_bf16(bool on) {
  if (on && !has_avx512_bf16()) return false;
  bf16_switch().store(on, std::memory_order_relaxed);
  return true;
}

bool isa_supported(Isa isa) { return static_cast<int>(isa) <= static_cast<int>(detected_isa()); }

Isa active_isa() { return static_cast<Isa>(current().load(std::memory_order_relaxed)); }

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::avx512: return "avx512";
    case Isa::avx2: return "avx2";
    case Isa::scalar: return "scalar";
  }
  return "scalar";
}

bool parse_isa(const char* name, Isa* out) {
  for (Isa isa : {Isa::scalar, Isa::avx2, Isa::avx512})
    if (std::strcmp(name, isa_name(isa)) == 0) {
      *out = isa;
      return true;
    }
  return false;
}

bool force_isa(const char* name) {
  Isa isa = default_isa();
  if (name != nullptr && *name != '\0' && !parse_isa(name, &isa)) return false;
  if (!isa_supported(isa)) return false;
  current().store(static_cast<int>(isa), std::memory_order_relaxed);
  return true;
}

const char* isa_name() { return isa_name(active_isa()); }

}  // namespace lmlab::kernels::cpu
