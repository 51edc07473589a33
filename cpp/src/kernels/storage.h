// Compact storage of parameters and state: float16 and bfloat16 (round to nearest even, or
// stochastically), and the 8-bit block-scaled codes. Included by kernels.inl after vec.h, inside
// the ISA namespace. The per-ISA part is a handful of primitives on float32 vectors and their
// uint32 companions (bit casts, integer arithmetic, masks, narrow loads and stores); the codecs are
// written once over them, so every ISA produces the same bits.
//
// The 8-bit code (one byte per element, one float32 absmax per block of kQBlock elements): a
// small floating-point format applied to y = x * (kQMax / absmax), chosen so that encoding is
// arithmetic and bit operations only (no table search):
//   signed   (momentum, first moments): sign, 4-bit exponent, 3-bit mantissa, bias 15:
//            |y| in {m/8 * 2^-14} (subnormal) and {(1 + m/8) * 2^(e-15)}, largest 1.875, smallest
//            nonzero 2^-17; the code of -0 (0x80) stands for a non-finite value.
//   unsigned (second moments, accumulators): 5-bit exponent, 3-bit mantissa, bias 31: smallest
//            nonzero 2^-33, the square of the signed code's range; the code 0 stands for a
//            non-finite value, so zero itself is not representable and rounds up to the smallest
//            code (the zero-point problem of second moments, Li et al. 2023: a second moment
//            quantized to 0 would divide by eps alone).
// Rounding is to nearest even; non-finite values do not enter a block's absmax and decode as NaN.
#pragma once

#include <cstdint>

constexpr std::size_t kQBlock = 256;  // elements per absmax (a multiple of every vector width)
constexpr float kQMax = 1.875f;       // largest code magnitude

// ---------------------------------------------------------------------------------------------
// Width-1 primitives (the tail of every ISA and the whole baseline path). Loads take the float
// vector type as a tag: it picks the width.

struct ScalarU {
  std::uint32_t v;
  static AO_INLINE ScalarU set(std::uint32_t x) { return {x}; }
  static AO_INLINE ScalarU iota() { return {0}; }
  friend AO_INLINE ScalarU operator+(ScalarU a, ScalarU b) { return {a.v + b.v}; }
  friend AO_INLINE ScalarU operator-(ScalarU a, ScalarU b) { return {a.v - b.v}; }
  friend AO_INLINE ScalarU operator*(ScalarU a, ScalarU b) { return {a.v * b.v}; }
  friend AO_INLINE ScalarU operator&(ScalarU a, ScalarU b) { return {a.v & b.v}; }
  friend AO_INLINE ScalarU operator|(ScalarU a, ScalarU b) { return {a.v | b.v}; }
  friend AO_INLINE ScalarU operator^(ScalarU a, ScalarU b) { return {a.v ^ b.v}; }
  template <int n> AO_INLINE ScalarU shr() const { return {v >> n}; }
  template <int n> AO_INLINE ScalarU shl() const { return {v << n}; }
  friend AO_INLINE ScalarU umax(ScalarU a, ScalarU b) { return {a.v > b.v ? a.v : b.v}; }
  friend AO_INLINE ScalarU umin(ScalarU a, ScalarU b) { return {a.v < b.v ? a.v : b.v}; }
};
using ScalarF = Scalar<float>;
struct ScalarM {
  bool v;
  friend AO_INLINE ScalarM operator&(ScalarM a, ScalarM b) { return {a.v && b.v}; }
  friend AO_INLINE ScalarM operator|(ScalarM a, ScalarM b) { return {a.v || b.v}; }
  friend AO_INLINE ScalarM operator!(ScalarM a) { return {!a.v}; }
};

AO_INLINE ScalarU ubits(ScalarF x) { return {__builtin_bit_cast(std::uint32_t, x.v)}; }
AO_INLINE ScalarF fbits(ScalarU x) { return {__builtin_bit_cast(float, x.v)}; }
AO_INLINE ScalarM lt(ScalarF a, ScalarF b) { return {a.v < b.v}; }
AO_INLINE ScalarM ult(ScalarU a, ScalarU b) { return {a.v < b.v}; }
AO_INLINE ScalarM ueq(ScalarU a, ScalarU b) { return {a.v == b.v}; }
// a < b for lanes below 2^31 (then as ult; AVX2 compares them in one instruction, signed).
AO_INLINE ScalarM slt(ScalarU a, ScalarU b) { return {a.v < b.v}; }
AO_INLINE ScalarF select(ScalarM m, ScalarF a, ScalarF b) { return m.v ? a : b; }
AO_INLINE ScalarU select(ScalarM m, ScalarU a, ScalarU b) { return m.v ? a : b; }
// Nonnegative float (an integer value, below 2^31) to uint32, and uint32 (below 2^24) to float.
AO_INLINE ScalarU to_uint(ScalarF x) { return {static_cast<std::uint32_t>(__builtin_rintf(x.v))}; }
AO_INLINE ScalarF to_float(ScalarU x) { return {static_cast<float>(static_cast<std::int32_t>(x.v))}; }
AO_INLINE ScalarU load_u8(ScalarF, const std::uint8_t* p) { return {*p}; }
AO_INLINE void store_u8(ScalarU x, std::uint8_t* p) { *p = static_cast<std::uint8_t>(x.v); }
AO_INLINE ScalarU load_u16(ScalarF, const std::uint16_t* p) { return {*p}; }
AO_INLINE void store_u16(ScalarU x, std::uint16_t* p) { *p = static_cast<std::uint16_t>(x.v); }

// IEEE binary16 <-> binary32 in software, bit for bit what F16C does: the baseline has no F16C.
AO_INLINE ScalarF half_to_float(ScalarU h) {
  const std::uint32_t sign = (h.v & 0x8000u) << 16, e = (h.v >> 10) & 0x1Fu, m = h.v & 0x3FFu;
  std::uint32_t bits;
  if (e == 0x1F) {
    bits = sign | 0x7F800000u | (m << 13) | (m ? 0x00400000u : 0u);  // Inf, quiet NaN
  } else if (e != 0) {
    bits = sign | ((e + 112u) << 23) | (m << 13);
  } else {  // zero or subnormal: m * 2^-24, exact in float
    const float f = static_cast<float>(m) * 0x1p-24f;
    bits = sign | __builtin_bit_cast(std::uint32_t, f);
  }
  return fbits({bits});
}
// Rounding: 0 to nearest even, 3 toward zero (the F16C immediate values).
template <int kMode>
AO_INLINE ScalarU float_to_half(ScalarF x) {
  const std::uint32_t f = ubits(x).v, sign = (f >> 16) & 0x8000u, a = f & 0x7FFFFFFFu;
  if (a >= 0x7F800000u) return {sign | 0x7C00u | (a > 0x7F800000u ? 0x200u | ((a >> 13) & 0x3FFu) : 0u)};
  if (a >= 0x47800000u)  // >= 2^16: beyond the largest half
    return {sign | (kMode == 0 ? 0x7C00u : 0x7BFFu)};
  if (a >= 0x38800000u) {  // normal half: drop 13 mantissa bits, rebias the exponent by 112
    std::uint32_t r = a - (112u << 23);
    if (kMode == 0) r += 0xFFFu + ((r >> 13) & 1u);
    r >>= 13;
    return {sign | (kMode == 0 ? r : r)};  // a carry into the exponent (or to Inf) is correct
  }
  // subnormal half (or zero): round a * 2^24 to an integer
  const float s = __builtin_bit_cast(float, a) * 0x1p24f;  // exact
  const float r = kMode == 0 ? __builtin_rintf(s) : __builtin_truncf(s);
  return {sign | static_cast<std::uint32_t>(r)};
}

// ---------------------------------------------------------------------------------------------
#if defined(__AVX2__) && defined(__FMA__)
struct U32x8 {
  __m256i v;
  static AO_INLINE U32x8 set(std::uint32_t x) { return {_mm256_set1_epi32(static_cast<int>(x))}; }
  static AO_INLINE U32x8 iota() { return {_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)}; }
  friend AO_INLINE U32x8 operator+(U32x8 a, U32x8 b) { return {_mm256_add_epi32(a.v, b.v)}; }
  friend AO_INLINE U32x8 operator-(U32x8 a, U32x8 b) { return {_mm256_sub_epi32(a.v, b.v)}; }
  friend AO_INLINE U32x8 operator*(U32x8 a, U32x8 b) { return {_mm256_mullo_epi32(a.v, b.v)}; }
  friend AO_INLINE U32x8 operator&(U32x8 a, U32x8 b) { return {_mm256_and_si256(a.v, b.v)}; }
  friend AO_INLINE U32x8 operator|(U32x8 a, U32x8 b) { return {_mm256_or_si256(a.v, b.v)}; }
  friend AO_INLINE U32x8 operator^(U32x8 a, U32x8 b) { return {_mm256_xor_si256(a.v, b.v)}; }
  template <int n> AO_INLINE U32x8 shr() const { return {_mm256_srli_epi32(v, n)}; }
  template <int n> AO_INLINE U32x8 shl() const { return {_mm256_slli_epi32(v, n)}; }
  friend AO_INLINE U32x8 umax(U32x8 a, U32x8 b) { return {_mm256_max_epu32(a.v, b.v)}; }
  friend AO_INLINE U32x8 umin(U32x8 a, U32x8 b) { return {_mm256_min_epu32(a.v, b.v)}; }
};
struct M8 {
  __m256i v;  // all-ones lanes
  friend AO_INLINE M8 operator&(M8 a, M8 b) { return {_mm256_and_si256(a.v, b.v)}; }
  friend AO_INLINE M8 operator|(M8 a, M8 b) { return {_mm256_or_si256(a.v, b.v)}; }
  friend AO_INLINE M8 operator!(M8 a) { return {_mm256_xor_si256(a.v, _mm256_set1_epi32(-1))}; }
};
AO_INLINE U32x8 ubits(F32x8 x) { return {_mm256_castps_si256(x.v)}; }
AO_INLINE F32x8 fbits(U32x8 x) { return {_mm256_castsi256_ps(x.v)}; }
AO_INLINE M8 lt(F32x8 a, F32x8 b) { return {_mm256_castps_si256(_mm256_cmp_ps(a.v, b.v, _CMP_LT_OQ))}; }
AO_INLINE M8 ult(U32x8 a, U32x8 b) {  // unsigned <, through the sign flip
  const __m256i s = _mm256_set1_epi32(static_cast<int>(0x80000000u));
  return {_mm256_cmpgt_epi32(_mm256_xor_si256(b.v, s), _mm256_xor_si256(a.v, s))};
}
AO_INLINE M8 ueq(U32x8 a, U32x8 b) { return {_mm256_cmpeq_epi32(a.v, b.v)}; }
AO_INLINE M8 slt(U32x8 a, U32x8 b) { return {_mm256_cmpgt_epi32(b.v, a.v)}; }  // lanes < 2^31
AO_INLINE F32x8 select(M8 m, F32x8 a, F32x8 b) { return {_mm256_blendv_ps(b.v, a.v, _mm256_castsi256_ps(m.v))}; }
AO_INLINE U32x8 select(M8 m, U32x8 a, U32x8 b) { return {_mm256_blendv_epi8(b.v, a.v, m.v)}; }
AO_INLINE U32x8 to_uint(F32x8 x) { return {_mm256_cvtps_epi32(x.v)}; }  // MXCSR: nearest even
AO_INLINE F32x8 to_float(U32x8 x) { return {_mm256_cvtepi32_ps(x.v)}; }
AO_INLINE U32x8 load_u8(F32x8, const std::uint8_t* p) {
  return {_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)))};
}
AO_INLINE void store_u8(U32x8 x, std::uint8_t* p) {  // lanes < 256
  const __m128i w = _mm_packus_epi32(_mm256_castsi256_si128(x.v), _mm256_extracti128_si256(x.v, 1));
  _mm_storel_epi64(reinterpret_cast<__m128i*>(p), _mm_packus_epi16(w, w));
}
AO_INLINE U32x8 load_u16(F32x8, const std::uint16_t* p) {
  return {_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)))};
}
AO_INLINE void store_u16(U32x8 x, std::uint16_t* p) {  // lanes < 65536
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p),
                   _mm_packus_epi32(_mm256_castsi256_si128(x.v), _mm256_extracti128_si256(x.v, 1)));
}
AO_INLINE F32x8 half_to_float(U32x8 h) {
  const __m128i w = _mm_packus_epi32(_mm256_castsi256_si128(h.v), _mm256_extracti128_si256(h.v, 1));
  return {_mm256_cvtph_ps(w)};
}
template <int kMode>
AO_INLINE U32x8 float_to_half(F32x8 x) {
  return {_mm256_cvtepu16_epi32(_mm256_cvtps_ph(x.v, kMode))};
}
#endif

#if defined(AO_AVX512)
struct U32x16 {
  __m512i v;
  static AO_INLINE U32x16 set(std::uint32_t x) { return {_mm512_set1_epi32(static_cast<int>(x))}; }
  static AO_INLINE U32x16 iota() { return {_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)}; }
  friend AO_INLINE U32x16 operator+(U32x16 a, U32x16 b) { return {_mm512_add_epi32(a.v, b.v)}; }
  friend AO_INLINE U32x16 operator-(U32x16 a, U32x16 b) { return {_mm512_sub_epi32(a.v, b.v)}; }
  friend AO_INLINE U32x16 operator*(U32x16 a, U32x16 b) { return {_mm512_mullo_epi32(a.v, b.v)}; }
  friend AO_INLINE U32x16 operator&(U32x16 a, U32x16 b) { return {_mm512_and_si512(a.v, b.v)}; }
  friend AO_INLINE U32x16 operator|(U32x16 a, U32x16 b) { return {_mm512_or_si512(a.v, b.v)}; }
  friend AO_INLINE U32x16 operator^(U32x16 a, U32x16 b) { return {_mm512_xor_si512(a.v, b.v)}; }
  template <int n> AO_INLINE U32x16 shr() const { return {_mm512_srli_epi32(v, n)}; }
  template <int n> AO_INLINE U32x16 shl() const { return {_mm512_slli_epi32(v, n)}; }
  friend AO_INLINE U32x16 umax(U32x16 a, U32x16 b) { return {_mm512_max_epu32(a.v, b.v)}; }
  friend AO_INLINE U32x16 umin(U32x16 a, U32x16 b) { return {_mm512_min_epu32(a.v, b.v)}; }
};
struct M16 {
  __mmask16 v;
  friend AO_INLINE M16 operator&(M16 a, M16 b) { return {static_cast<__mmask16>(a.v & b.v)}; }
  friend AO_INLINE M16 operator|(M16 a, M16 b) { return {static_cast<__mmask16>(a.v | b.v)}; }
  friend AO_INLINE M16 operator!(M16 a) { return {static_cast<__mmask16>(~a.v)}; }
};
AO_INLINE U32x16 ubits(F32x16 x) { return {_mm512_castps_si512(x.v)}; }
AO_INLINE F32x16 fbits(U32x16 x) { return {_mm512_castsi512_ps(x.v)}; }
AO_INLINE M16 lt(F32x16 a, F32x16 b) { return {_mm512_cmp_ps_mask(a.v, b.v, _CMP_LT_OQ)}; }
AO_INLINE M16 ult(U32x16 a, U32x16 b) { return {_mm512_cmplt_epu32_mask(a.v, b.v)}; }
AO_INLINE M16 ueq(U32x16 a, U32x16 b) { return {_mm512_cmpeq_epu32_mask(a.v, b.v)}; }
AO_INLINE M16 slt(U32x16 a, U32x16 b) { return {_mm512_cmpgt_epi32_mask(b.v, a.v)}; }  // lanes < 2^31
AO_INLINE F32x16 select(M16 m, F32x16 a, F32x16 b) { return {_mm512_mask_blend_ps(m.v, b.v, a.v)}; }
AO_INLINE U32x16 select(M16 m, U32x16 a, U32x16 b) { return {_mm512_mask_blend_epi32(m.v, b.v, a.v)}; }
AO_INLINE U32x16 to_uint(F32x16 x) { return {_mm512_cvtps_epi32(x.v)}; }
AO_INLINE F32x16 to_float(U32x16 x) { return {_mm512_cvtepi32_ps(x.v)}; }
AO_INLINE U32x16 load_u8(F32x16, const std::uint8_t* p) {
  return {_mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)))};
}
AO_INLINE void store_u8(U32x16 x, std::uint8_t* p) {
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm512_cvtepi32_epi8(x.v));
}
AO_INLINE U32x16 load_u16(F32x16, const std::uint16_t* p) {
  return {_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)))};
}
AO_INLINE void store_u16(U32x16 x, std::uint16_t* p) {
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtepi32_epi16(x.v));
}
AO_INLINE F32x16 half_to_float(U32x16 h) { return {_mm512_cvtph_ps(_mm512_cvtepi32_epi16(h.v))}; }
template <int kMode>
AO_INLINE U32x16 float_to_half(F32x16 x) {
  return {_mm512_cvtepu16_epi32(_mm512_cvtps_ph(x.v, kMode | _MM_FROUND_NO_EXC))};
}
#endif

// The uint32 and mask companions of a float vector type.
template <class V> struct Companion;
template <> struct Companion<ScalarF> { using U = ScalarU; using M = ScalarM; };
#if defined(__AVX2__) && defined(__FMA__)
template <> struct Companion<F32x8> { using U = U32x8; using M = M8; };
#endif
#if defined(AO_AVX512)
template <> struct Companion<F32x16> { using U = U32x16; using M = M16; };
#endif

// ---------------------------------------------------------------------------------------------
// The codecs, written once.

template <class V>
AO_INLINE V load_bf16(V tag, const std::uint16_t* p) {
  return fbits(load_u16(tag, p).template shl<16>());
}
// Round to nearest even; a NaN stays a (quiet) NaN.
template <class V>
AO_INLINE typename Companion<V>::U bf16_rne_bits(V x) {
  using U = typename Companion<V>::U;
  const U b = ubits(x);
  const U r = (b + U::set(0x7FFFu) + (b.template shr<16>() & U::set(1u))).template shr<16>();
  const U nan = b.template shr<16>() | U::set(0x40u);
  return select(slt(U::set(0x7F800000u), b & U::set(0x7FFFFFFFu)), nan, r);
}
template <class V>
AO_INLINE V load_f16(V tag, const std::uint16_t* p) {
  return half_to_float(load_u16(tag, p));
}

// 32 random bits per element from a counter-based hash of (key, element index): the same bits
// whatever the ISA, thread count or chunking. key mixes the seed and the step (see
// stochastic_key); index is the element's index in its tensor (below 2^32 for one vector:
// base_lo + lane must not wrap, which the caller ensures).
// The hash before its last step (x ^ x >> 16): its high 16 bits are already the result's.
template <class U>
AO_INLINE U random_mix(U key_lo, U key_hi, std::uint32_t base_lo) {
  // (base_lo + lane) * 0x9E3779B1, wrapping, is base_lo * 0x9E3779B1 + lane * 0x9E3779B1: a
  // broadcast and an add per vector (lane * 0x9E3779B1 is a constant), no multiply.
  constexpr std::uint32_t kMul = 0x9E3779B1u;
  U x = (U::set(base_lo * kMul) + U::iota() * U::set(kMul)) ^ key_lo;
  x = x ^ x.template shr<16>();  // murmur3's finaliser
  x = x * U::set(0x85EBCA6Bu);
  x = x ^ x.template shr<13>();
  return (x ^ key_hi) * U::set(0xC2B2AE35u);
}
template <class U>
AO_INLINE U random_bits(U key_lo, U key_hi, std::uint32_t base_lo) {
  const U x = random_mix(key_lo, key_hi, base_lo);
  return x ^ x.template shr<16>();
}
// random_bits(...) >> 16, one xor fewer: (x ^ x >> 16) >> 16 == x >> 16.
template <class U>
AO_INLINE U random_bits_hi16(U key_lo, U key_hi, std::uint32_t base_lo) {
  return random_mix(key_lo, key_hi, base_lo).template shr<16>();
}

// Stochastic rounding to bfloat16: P(round up) = the discarded fraction, exactly (to 2^-16).
// rnd16: 16 random bits (the high half of random_bits) per lane. An infinity keeps its bits
// (adding below 2^16 does not carry out of its zero mantissa), as nearest-even rounding keeps
// them; a NaN becomes a quiet NaN as bf16_rne_bits makes it.
template <class V>
AO_INLINE typename Companion<V>::U bf16_sr_bits(V x, typename Companion<V>::U rnd16) {
  using U = typename Companion<V>::U;
  const U b = ubits(x);
  const U sr = (b + rnd16).template shr<16>();
  const U nan = b.template shr<16>() | U::set(0x40u);
  return select(slt(U::set(0x7F800000u), b & U::set(0x7FFFFFFFu)), nan, sr);
}
// Stochastic rounding to float16: between the neighbours toward and away from zero, up with
// probability (|x| - |lo|) / (|hi| - |lo|) (24 random bits).
template <class V>
AO_INLINE typename Companion<V>::U f16_sr_bits(V x, typename Companion<V>::U rnd) {
  using U = typename Companion<V>::U;
  const U lo = float_to_half<3>(x);
  const U hi = lo + U::set(1u);
  const V lo_f = abs(half_to_float(lo)), hi_f = abs(half_to_float(hi)), ax = abs(x);
  const V frac = (ax - lo_f) / (hi_f - lo_f);
  const V r = to_float(rnd.template shr<8>()) * V::set(0x1p-24f);
  const U exact_or_special = lo;  // lo is exact, NaN, or Inf (then frac is NaN or 0)
  return select(lt(r, frac), hi, exact_or_special);
}

// 8-bit codes. kSigned: sign + E4M3 (bias 15); else E5M3 (bias 31). See the file comment.
template <bool kSigned>
struct QCode {
  static constexpr int kBias = kSigned ? 15 : 31;
  static constexpr std::uint32_t kMag = kSigned ? 0x7Fu : 0xFFu;       // largest magnitude code
  static constexpr std::uint32_t kNonFinite = kSigned ? 0x80u : 0x00u;  // the code of NaN/Inf
  static constexpr float kMinNormal = kSigned ? 0x1p-14f : 0x1p-30f;    // 2^(1 - bias)
  static constexpr float kSubScale = kSigned ? 0x1p17f : 0x1p33f;       // 1 / (2^(1 - bias - 3))
  static constexpr float kSubUnit = kSigned ? 0x1p-17f : 0x1p-33f;
};

// Encodes x (times inv_scale = kQMax / absmax, or 0 for an all-zero block) as codes in uint32
// lanes. kFiniteInv: the caller knows inv_scale is finite (every block but one of subnormals), so
// ax * inv_scale is 0 for ax = 0 and finite for finite x (a non-finite x gets its code below
// whatever y is): the two selects become a min.
template <bool kSigned, bool kFiniteInv = false, class V>
AO_INLINE typename Companion<V>::U q8_encode(V x, V inv_scale) {
  using U = typename Companion<V>::U;
  using Q = QCode<kSigned>;
  const U b = ubits(x);
  const V ax = abs(x);
  V y;
  if constexpr (kFiniteInv) {
    y = min_nan(ax * inv_scale, V::set(kQMax));  // clamps rounding above kQMax
  } else {
    // 0 stays 0 where inv_scale is infinite (a block of subnormals whose absmax is below
    // kQMax / FLT_MAX): 0 * Inf would be NaN, whose bits make no code.
    const V y0 = select(lt(V::set(0), ax), ax * inv_scale, V::set(0));
    y = select(lt(V::set(kQMax), y0), V::set(kQMax), y0);  // clamps rounding above kQMax
  }
  // normal: round the mantissa to 3 bits (nearest even), rebias the exponent
  const U yb = ubits(y);
  // (rebiasing before the shift: yb >= the bits of kMinNormal, above the subtrahend, wherever
  // this value is used, so nothing borrows; one add fewer)
  const U normal = (yb + U::set(0x7FFFFu - (static_cast<std::uint32_t>(127 - Q::kBias) << 23)) +
                    (yb.template shr<20>() & U::set(1u)))
                       .template shr<20>();
  // subnormal: y / 2^(1 - bias - 3), rounded to an integer (nearest even); 8 means the smallest
  // normal, which is also its code
  const U sub = to_uint(y * V::set(Q::kSubScale));
  U mag = select(lt(y, V::set(Q::kMinNormal)), sub, normal);
  if constexpr (!kSigned) mag = umax(mag, U::set(1u));  // no zero: the smallest code
  // A magnitude that rounds to 0 takes no sign: the code of -0 (0x80) stands for a non-finite
  // value, so a small negative value (or -0.0) must encode as +0, not decode as NaN.
  U code = mag;
  if constexpr (kSigned) code = select(ueq(mag, U::set(0u)), mag, mag | (b.template shr<24>() & U::set(0x80u)));
  const auto finite = slt(b & U::set(0x7FFFFFFFu), U::set(0x7F800000u));
  return select(finite, code, U::set(Q::kNonFinite));
}

template <bool kSigned, class V>
AO_INLINE V q8_decode(typename Companion<V>::U code, V scale) {
  using U = typename Companion<V>::U;
  using Q = QCode<kSigned>;
  const U mag = code & U::set(Q::kMag);
  const V normal = fbits(mag.template shl<20>() + U::set(static_cast<std::uint32_t>(127 - Q::kBias) << 23));
  const V sub = to_float(mag) * V::set(Q::kSubUnit);
  V y = select(slt(mag, U::set(8u)), sub, normal) * scale;
  // (the shift first: then the and and the or make one ternary-logic instruction on AVX-512)
  if constexpr (kSigned) y = fbits(ubits(y) | (code.template shl<24>() & U::set(0x80000000u)));
  return select(ueq(code, U::set(Q::kNonFinite)), V::set(__builtin_nanf("")), y);
}
