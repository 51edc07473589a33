// The only place that inspects the CPU and ADAPTOPT_ISA. Compiled for the baseline ISA.
#include <atomic>
#include <cstdlib>
#include <cstring>

#include "adaptopt/kernels.h"

namespace adaptopt {
namespace {

bool detect(Isa isa) {
  switch (isa) {
    case Isa::Scalar:
      return true;
#if defined(ADAPTOPT_X86)
    // libgcc's __builtin_cpu_supports checks CPUID and, through XGETBV, that the OS saves the
    // YMM/ZMM state; a feature the OS does not enable reads as absent.
    // F16C (half-precision conversions) came with AVX2 on every x86 CPU, and the 16-bit kernels use it.
    case Isa::Avx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    case Isa::Avx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") &&
             __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
#endif
    default:
      return false;
  }
}

const KernelTable& table_of(Isa isa) {
  switch (isa) {
#if defined(ADAPTOPT_X86)
    case Isa::Avx512:
      return kernel_table_avx512();
    case Isa::Avx2:
      return kernel_table_avx2();
#endif
    default:
      return kernel_table_scalar();
  }
}

Isa best_isa() {
  for (int i = kNumIsas - 1; i > 0; --i)
    if (isa_supported(static_cast<Isa>(i))) return static_cast<Isa>(i);
  return Isa::Scalar;
}

std::atomic<int> g_active{-1};

}  // namespace

bool isa_supported(Isa isa) {
  static const bool cache[kNumIsas] = {detect(Isa::Scalar), detect(Isa::Avx2), detect(Isa::Avx512)};
  return cache[static_cast<int>(isa)];
}

const char* isa_name(Isa isa) {
  static const char* const names[kNumIsas] = {"scalar", "avx2", "avx512"};
  return names[static_cast<int>(isa)];
}

bool isa_from_name(const char* name, Isa* out) {
  for (int i = 0; i < kNumIsas; ++i) {
    if (std::strcmp(name, isa_name(static_cast<Isa>(i))) == 0) {
      *out = static_cast<Isa>(i);
      return true;
    }
  }
  return false;
}

Isa active_isa() {
  int a = g_active.load(std::memory_order_acquire);
  if (a < 0) {
    // The module init applies ADAPTOPT_ISA before any kernel runs; this is the default.
    int expected = -1;
    g_active.compare_exchange_strong(expected, static_cast<int>(best_isa()));
    a = g_active.load(std::memory_order_acquire);
  }
  return static_cast<Isa>(a);
}

void set_active_isa(Isa isa) { g_active.store(static_cast<int>(isa), std::memory_order_release); }

const KernelTable& active_table() { return table_of(active_isa()); }

bool apply_isa_env(const char** error_name, bool* unknown) {
  const char* env = std::getenv("ADAPTOPT_ISA");
  if (env == nullptr || *env == '\0') return true;
  Isa isa;
  if (!isa_from_name(env, &isa)) {
    *error_name = env;
    *unknown = true;
    return false;
  }
  if (!isa_supported(isa)) {
    *error_name = env;
    *unknown = false;
    return false;
  }
  set_active_isa(isa);
  return true;
}

}  // namespace adaptopt
