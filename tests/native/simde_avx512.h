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

// _mm512_cmplt_epu32_mask (unsigned compare: the 16-bit storage codecs) is missing from SIMDe
// 0.7.4 too: the signed compare of the operands with their sign bits flipped is the same.
#if !defined(_mm512_cmplt_epu32_mask)
static inline simde__mmask16 ao_simde_mm512_cmplt_epu32_mask(simde__m512i a, simde__m512i b) {
  const simde__m512i s = simde_mm512_set1_epi32(static_cast<int>(0x80000000u));
  return simde_mm512_cmpgt_epi32_mask(simde_mm512_xor_si512(b, s), simde_mm512_xor_si512(a, s));
}
#define _mm512_cmplt_epu32_mask(a, b) ao_simde_mm512_cmplt_epu32_mask(a, b)
#endif
#if !defined(_mm512_cmpeq_epu32_mask)  // equality does not care about signedness
#define _mm512_cmpeq_epu32_mask(a, b) simde_mm512_cmpeq_epi32_mask(a, b)
#endif

// The integer, int <-> float and half <-> float conversions of the 16-bit and 8-bit storage
// codecs are missing from SIMDe 0.7.4 as well. Each works lane by lane, so two native AVX2 (and
// F16C) conversions on the 256-bit halves compute exactly what the AVX-512 instruction does.
static inline __m256i ao_lo_si(simde__m512i a) { return simde_mm512_castsi512_si256(a); }
static inline __m256i ao_hi_si(simde__m512i a) { return simde_mm512_extracti64x4_epi64(a, 1); }
static inline simde__m512i ao_join_si(__m256i lo, __m256i hi) {
  return simde_mm512_inserti64x4(simde_mm512_castsi256_si512(lo), hi, 1);
}
static inline simde__m512i ao_ps_si(simde__m512 a) { return simde_mm512_castps_si512(a); }
static inline simde__m512 ao_si_ps(simde__m512i a) { return simde_mm512_castsi512_ps(a); }
#if !defined(_mm512_cvtps_epi32)
static inline simde__m512i ao_cvtps_epi32(simde__m512 a) {  // MXCSR rounding, as the instruction
  const simde__m512i b = ao_ps_si(a);
  return ao_join_si(_mm256_cvtps_epi32(_mm256_castsi256_ps(ao_lo_si(b))),
                    _mm256_cvtps_epi32(_mm256_castsi256_ps(ao_hi_si(b))));
}
#define _mm512_cvtps_epi32(a) ao_cvtps_epi32(a)
#endif
#if !defined(_mm512_cvtepi32_ps)
static inline simde__m512 ao_cvtepi32_ps(simde__m512i a) {
  return ao_si_ps(ao_join_si(_mm256_castps_si256(_mm256_cvtepi32_ps(ao_lo_si(a))),
                             _mm256_castps_si256(_mm256_cvtepi32_ps(ao_hi_si(a)))));
}
#define _mm512_cvtepi32_ps(a) ao_cvtepi32_ps(a)
#endif
#if !defined(_mm512_cvtepu8_epi32)
static inline simde__m512i ao_cvtepu8_epi32(simde__m128i a) {
  const __m128i x = a;
  return ao_join_si(_mm256_cvtepu8_epi32(x), _mm256_cvtepu8_epi32(_mm_srli_si128(x, 8)));
}
#define _mm512_cvtepu8_epi32(a) ao_cvtepu8_epi32(a)
#endif
#if !defined(_mm512_cvtepu16_epi32)
static inline simde__m512i ao_cvtepu16_epi32(simde__m256i a) {
  const __m256i x = a;
  return ao_join_si(_mm256_cvtepu16_epi32(_mm256_castsi256_si128(x)), _mm256_cvtepu16_epi32(_mm256_extracti128_si256(x, 1)));
}
#define _mm512_cvtepu16_epi32(a) ao_cvtepu16_epi32(a)
#endif
// Truncating narrowings (VPMOVDB/VPMOVDW keep the low byte/word of each lane).
#if !defined(_mm512_cvtepi32_epi16)
static inline simde__m256i ao_cvtepi32_epi16(simde__m512i a) {
  const __m256i m = _mm256_set1_epi32(0xFFFF);
  const __m256i w = _mm256_packus_epi32(_mm256_and_si256(ao_lo_si(a), m), _mm256_and_si256(ao_hi_si(a), m));
  return _mm256_permute4x64_epi64(w, 0xD8);
}
#define _mm512_cvtepi32_epi16(a) ao_cvtepi32_epi16(a)
#endif
#if !defined(_mm512_cvtepi32_epi8)
static inline simde__m128i ao_cvtepi32_epi8(simde__m512i a) {
  const __m256i w = ao_cvtepi32_epi16(simde_mm512_and_si512(a, simde_mm512_set1_epi32(0xFF)));
  return _mm_packus_epi16(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1));
}
#define _mm512_cvtepi32_epi8(a) ao_cvtepi32_epi8(a)
#endif
#if !defined(_mm512_cvtph_ps)
static inline simde__m512 ao_cvtph_ps(simde__m256i a) {
  const __m256i x = a;
  return ao_si_ps(ao_join_si(_mm256_castps_si256(_mm256_cvtph_ps(_mm256_castsi256_si128(x))),
                             _mm256_castps_si256(_mm256_cvtph_ps(_mm256_extracti128_si256(x, 1)))));
}
#define _mm512_cvtph_ps(a) ao_cvtph_ps(a)
#endif
#if !defined(_mm512_cvtps_ph)
#define _mm512_cvtps_ph(a, imm)                                                                         \
  (__m256i) _mm256_set_m128i(_mm256_cvtps_ph(_mm256_castsi256_ps(ao_hi_si(ao_ps_si(a))), (imm) & 7),    \
                            _mm256_cvtps_ph(_mm256_castsi256_ps(ao_lo_si(ao_ps_si(a))), (imm) & 7))
#endif

#define AO_SIMDE_AVX512 1
