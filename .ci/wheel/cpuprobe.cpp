// Raw CPUID/XGETBV as the emulated CPU reports them, and what libgcc's __builtin_cpu_supports
// (the dispatcher's test) makes of them.
#include <cpuid.h>
#include <cstdio>
int main() {
  unsigned a, b, c, d, max = __get_cpuid_max(0, nullptr);
  __cpuid(1, a, b, c, d);
  const unsigned l1c = c;
  unsigned l7b = 0;
  if (max >= 7) {
    __cpuid_count(7, 0, a, b, c, d);
    l7b = b;
  }
  const unsigned osxsave = (l1c >> 27) & 1;
  unsigned long long xcr0 = 0;
  if (osxsave) {  // XGETBV is #UD without OSXSAVE
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    xcr0 = (static_cast<unsigned long long>(hi) << 32) | lo;
  }
  __builtin_cpu_init();
  std::printf("cpuid: fma=%u avx=%u osxsave=%u avx2=%u avx512f=%u xcr0=0x%llx os_ymm=%d os_zmm=%d | "
              "libgcc: avx=%d avx2=%d fma=%d avx512f=%d\n",
              (l1c >> 12) & 1, (l1c >> 28) & 1, osxsave, (l7b >> 5) & 1, (l7b >> 16) & 1, xcr0,
              (xcr0 & 0x6) == 0x6, (xcr0 & 0xe6) == 0xe6, !!__builtin_cpu_supports("avx"),
              !!__builtin_cpu_supports("avx2"), !!__builtin_cpu_supports("fma"),
              !!__builtin_cpu_supports("avx512f"));
}
