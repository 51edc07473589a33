// AVX-512F emulated by SIMDe on AVX2 + FMA hardware, for isa_avx512_simde.cpp only.
//
// SIMDe's native aliases map __m512, __m512d and _mm512_* to simde__m512, simde__m512d and
// simde_mm512_*, so kernels.inl/vec.h compile their AVX-512 wrappers unchanged (AO_SIMDE_AVX512).
// SIMDe implements each 512-bit operation on two native 256-bit halves here, so the arithmetic
// is the AVX2 hardware's: correctly rounded, fused multiply-add, x86 NaN rules. The few places
// where SIMDe is not bit-exact, or lacks an intrinsic, are fixed below (the driver catches them).
#pragma once

// The emulation must be an emulation (no AVX-512 instruction) over AVX2/FMA hardware: without a
// native 256-bit FMA, SIMDe writes _mm512_fmadd_ps as (a * b) + c, which -ffp-contract=off
// rounds twice, and the comparison with the fused reference would fail for SIMDe's reasons.
#if defined(__AVX512F__)
#error "isa_avx512_simde.cpp must not be compiled with AVX-512 flags: it would test the real ISA"
#endif
#if !defined(__AVX2__) || !defined(__FMA__)
#error "isa_avx512_simde.cpp needs -mavx2 -mfma (SIMDe then builds AVX-512 from native AVX2 halves)"
#endif

#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>

#if !defined(SIMDE_X86_AVX2_NATIVE) || !defined(SIMDE_X86_FMA_NATIVE) || defined(SIMDE_X86_AVX512F_NATIVE) || \
    !SIMDE_NATURAL_VECTOR_SIZE_LE(256)
#error "SIMDe is not emulating AVX-512F over native AVX2 + FMA"
#endif

// _mm512_abs_ps/_pd clear the sign bit (VPANDD). SIMDe (0.7.4) computes (x < 0) ? -x : x, which
// keeps the sign of -0.0 and of a negative NaN: Adamax's |g| + eps then keeps a NaN gradient's
// sign where AVX-512 clears it. Clear the bit, as the hardware does.
static inline simde__m512 ao_simde_mm512_abs_ps(simde__m512 a) {
  return simde_mm512_castsi512_ps(simde_mm512_and_si512(simde_mm512_castps_si512(a), simde_mm512_set1_epi32(0x7fffffff)));
}
static inline simde__m512d ao_simde_mm512_abs_pd(simde__m512d a) {
  return simde_mm512_castsi512_pd(
      simde_mm512_and_si512(simde_mm512_castpd_si512(a), simde_mm512_set1_epi64(0x7fffffffffffffffLL)));
}
#undef _mm512_abs_ps
#undef _mm512_abs_pd
#define _mm512_abs_ps(a) ao_simde_mm512_abs_ps(a)
#define _mm512_abs_pd(a) ao_simde_mm512_abs_pd(a)

// _mm512_cvtps_pd (8 floats widened to doubles: the sumsq of float gradients) is missing from
// SIMDe 0.7.4 (Debian bookworm); newer SIMDe has it, with the alias defined as a macro.
#if !defined(_mm512_cvtps_pd)
static inline simde__m512d ao_simde_mm512_cvtps_pd(simde__m256 a) {
  const simde__m512d lo = simde_mm512_castpd256_pd512(simde_mm256_cvtps_pd(simde_mm256_castps256_ps128(a)));
  return simde_mm512_insertf64x4(lo, simde_mm256_cvtps_pd(simde_mm256_extractf128_ps(a, 1)), 1);
}
#define _mm512_cvtps_pd(a) ao_simde_mm512_cvtps_pd(a)
#endif

#define AO_SIMDE_AVX512 1
