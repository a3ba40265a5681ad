// Runtime instruction-set selection for the cpu:: kernels.
// The library is compiled for the baseline x86-64 (no -march); vector code lives in functions tagged with
// LMLAB_TARGET_AVX512 / LMLAB_TARGET_AVX2 and each kernel switches on active_isa() per call. The best ISA the
// CPU (and OS) supports is detected once; the environment variable LMLAB_ISA=scalar|avx2|avx512 caps it, and
// force_isa() lets tests walk every path. Invariant: active_isa() is always supported by this machine.
#pragma once

namespace lmlab::kernels::cpu {

enum class Isa { scalar = 0, avx2 = 1, avx512 = 2 };

#if defined(__x86_64__) || defined(__i386__)
#define LMLAB_X86 1
// avx512: F + BW (16-bit widening) + VL + DQ; avx2: AVX2 + FMA + F16C (half conversion).
#define LMLAB_TARGET_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma,f16c")))
#define LMLAB_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))
// The avx512 tier plus VNNI (vpdpbusd): integer-dot kernels use it when has_avx512_vnni(), else their AVX2 path.
#define LMLAB_TARGET_AVX512_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,fma,f16c")))
// The avx512 tier plus AVX512_BF16 (vdpbf16ps, vcvtne2ps2bf16): the bf16-weight prefill GEMM uses it when
// avx512_bf16_enabled(), else the tier's f32 FMA path.
#define LMLAB_TARGET_AVX512_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma,f16c")))
#else
#define LMLAB_X86 0
#endif

Isa active_isa();                  // the path the kernels take now
Isa detected_isa();                // the best one this machine supports
bool isa_supported(Isa isa);
bool has_avx512_vnni();            // this machine has AVX-512 VNNI (within the avx512 tier, not a tier of its own)
bool has_avx512_bf16();            // this machine has AVX512_BF16 (within the avx512 tier, like VNNI)
// has_avx512_bf16() and not switched off (LMLAB_BF16_DOT=0 in the environment, or the test hook below).
bool avx512_bf16_enabled();
// Test hook: on = false makes the bf16 kernels take the avx512 tier's FMA path (so that path stays tested on
// machines that have AVX512_BF16); on = true restores the default. Returns false, changing nothing, when asked
// for on and the machine lacks AVX512_BF16.
bool set_avx512_bf16(bool on);
const char* isa_name(Isa isa);     // "scalar", "avx2", "avx512"
bool parse_isa(const char* name, Isa* out);

// Test hook: select a path by name; nullptr or "" restores the default (detected, capped by LMLAB_ISA).
// Returns false, changing nothing, when the name is unknown or the machine lacks that ISA.
bool force_isa(const char* name);

}  // namespace lmlab::kernels::cpu
