// The AVX-512 kernels compiled a second time against SIMDe's emulation of the AVX-512F
// intrinsics (simde_avx512.h), with the AVX2 flags: runs on any AVX2 + FMA CPU. Test-only.
#include "simde_avx512.h"

#define AO_ISA_NS isa_avx512_simde
#define AO_ISA_NAME "avx512-simde"
#include "kernels/kernels.inl"

#include <cstdint>
#include <cstdio>
#include <cstring>

#include "tables.h"

const adaptopt::KernelTable& adaptopt::test::kernel_table_avx512_simde() { return isa_avx512_simde::table(); }

namespace {

template <class T, class U>
U bits(T x) {
  U u;
  std::memcpy(&u, &x, sizeof u);
  return u;
}

}  // namespace

// The replaced intrinsics against their Intel definitions, on the values where SIMDe's own
// versions go wrong: VPANDD clears the sign of -0.0 and of a NaN; VCVTPS2PD widens exactly.
bool adaptopt::test::simde_overrides_ok() {
  bool ok = true;
  const float nan = -__builtin_nanf("");
  const float f[16] = {-0.0f, 0.0f, nan, -nan, -1.5f, 2.5f, -__builtin_inff(), __builtin_inff(),
                       -1e-45f, 3.4e38f, -7.0f, 1e-30f, -0.1f, 0.25f, -3e-39f, 42.0f};
  float fa[16];
  _mm512_storeu_ps(fa, _mm512_abs_ps(_mm512_loadu_ps(f)));
  double dcv[16];
  _mm512_storeu_pd(dcv, _mm512_cvtps_pd(_mm256_loadu_ps(f)));
  _mm512_storeu_pd(dcv + 8, _mm512_cvtps_pd(_mm256_loadu_ps(f + 8)));
  double da[16];
  _mm512_storeu_pd(da, _mm512_abs_pd(_mm512_loadu_pd(dcv)));
  _mm512_storeu_pd(da + 8, _mm512_abs_pd(_mm512_loadu_pd(dcv + 8)));
  for (int i = 0; i < 16; ++i) {
    const auto fb = bits<float, std::uint32_t>(f[i]);
    const auto db = bits<double, std::uint64_t>(static_cast<double>(f[i]));
    if (bits<float, std::uint32_t>(fa[i]) != (fb & 0x7fffffffu) || bits<double, std::uint64_t>(dcv[i]) != db ||
        bits<double, std::uint64_t>(da[i]) != (db & 0x7fffffffffffffffULL)) {
      std::printf("MISMATCH simde_avx512.h: an emulated intrinsic differs from the hardware's definition at "
                  "input 0x%08x: abs_ps 0x%08x, cvtps_pd 0x%016llx, abs_pd 0x%016llx\n",
                  static_cast<unsigned>(fb), static_cast<unsigned>(bits<float, std::uint32_t>(fa[i])),
                  static_cast<unsigned long long>(bits<double, std::uint64_t>(dcv[i])),
                  static_cast<unsigned long long>(bits<double, std::uint64_t>(da[i])));
      ok = false;
    }
  }
  // Whether SIMDe's own abs still needs replacing (say so, so the override can go when it does not).
  float own[16];
  simde_mm512_storeu_ps(own, simde_mm512_abs_ps(simde_mm512_loadu_ps(f)));
  int differ = 0;
  for (int i = 0; i < 16; ++i) differ += bits<float, std::uint32_t>(own[i]) != bits<float, std::uint32_t>(fa[i]);
  std::printf("kernel_diff: SIMDe %d.%d.%d: its own simde_mm512_abs_ps %s\n", SIMDE_VERSION_MAJOR, SIMDE_VERSION_MINOR,
              SIMDE_VERSION_MICRO,
              differ ? "keeps the sign of -0.0 and of a negative NaN (replaced by simde_avx512.h)"
                     : "clears the sign bit like VPANDD (simde_avx512.h's replacement is no longer needed)");
  return ok;
}
