// Thin typed vector wrappers (<immintrin.h> is included by kernels.inl at global scope).
// Included only by kernels.inl inside an ISA-named namespace, so
// every symbol here is distinct per ISA file: nothing compiled with AVX-512 flags can be merged
// by the linker into the baseline path. Only builtins and intrinsics are used (no std:: math
// functions, whose out-of-line copies would be shared across files).
//
// Every wrapper has the same operations: load, store, set, + - * /, sqrt, abs, mul_add, max_nan,
// min_nan, max_propagate; the double wrappers also have load_from (a widening load from float).
// Scalar<T> is the width-1 vector used for the tail of every ISA and for the whole baseline path.
#pragma once

#ifndef AO_INLINE
#define AO_INLINE inline __attribute__((always_inline))
#endif

// mul_add(a, b, c) = a*b + c, rounded once (FMA) where the ISA has FMA, so that the tail rounds
// exactly like the vector body. tests/native sets AO_FUSED itself: 1 for its width-1 reference
// that rounds like the AVX2/AVX-512 tables, 0 for an AVX2 twin of the (unfused) scalar table.
#ifndef AO_FUSED
#if defined(__FMA__)
#define AO_FUSED 1
#else
#define AO_FUSED 0
#endif
#endif
#if AO_FUSED
#define AO_MUL_ADD(isa, t, a, b, c) isa##_fmadd_##t(a, b, c)
#else
#define AO_MUL_ADD(isa, t, a, b, c) isa##_add_##t(isa##_mul_##t(a, b), c)
#endif

template <class T>
struct Scalar {
  using Elem = T;
  static constexpr std::size_t kLanes = 1;
  T v;
  static AO_INLINE Scalar load(const T* p) { return {*p}; }
  template <class U>
  static AO_INLINE Scalar load_from(const U* p) { return {T(*p)}; }  // widening load
  static AO_INLINE Scalar set(T x) { return {x}; }
  AO_INLINE void store(T* p) const { *p = v; }
  friend AO_INLINE Scalar operator+(Scalar a, Scalar b) { return {a.v + b.v}; }
  friend AO_INLINE Scalar operator-(Scalar a, Scalar b) { return {a.v - b.v}; }
  friend AO_INLINE Scalar operator*(Scalar a, Scalar b) { return {a.v * b.v}; }
  friend AO_INLINE Scalar operator/(Scalar a, Scalar b) { return {a.v / b.v}; }
  friend AO_INLINE Scalar sqrt(Scalar a) {
    if constexpr (sizeof(T) == 4) return {__builtin_sqrtf(a.v)};
    else return {__builtin_sqrt(a.v)};
  }
  friend AO_INLINE Scalar mul_add(Scalar a, Scalar b, Scalar c) {
#if AO_FUSED  // without FMA instructions, __builtin_fma is libm's fma (correctly rounded)
    if constexpr (sizeof(T) == 4) return {__builtin_fmaf(a.v, b.v, c.v)};
    else return {__builtin_fma(a.v, b.v, c.v)};
#else
    return {a.v * b.v + c.v};
#endif
  }
  // (a > b) ? a : b, the semantics of x86 MAXPS: returns b when either is NaN.
  friend AO_INLINE Scalar max_nan(Scalar a, Scalar b) { return {a.v > b.v ? a.v : b.v}; }
  friend AO_INLINE Scalar min_nan(Scalar a, Scalar b) { return {a.v < b.v ? a.v : b.v}; }
  // max(a, b) that is NaN when either is (torch.maximum).
  friend AO_INLINE Scalar max_propagate(Scalar a, Scalar b) { return {a.v != a.v ? a.v : (a.v > b.v ? a.v : b.v)}; }
  friend AO_INLINE Scalar abs(Scalar a) {
    if constexpr (sizeof(T) == 4) return {__builtin_fabsf(a.v)};
    else return {__builtin_fabs(a.v)};
  }
};

#if defined(__AVX2__) && defined(__FMA__)
struct F32x8 {
  using Elem = float;
  static constexpr std::size_t kLanes = 8;
  __m256 v;
  static AO_INLINE F32x8 load(const float* p) { return {_mm256_loadu_ps(p)}; }
  static AO_INLINE F32x8 set(float x) { return {_mm256_set1_ps(x)}; }
  AO_INLINE void store(float* p) const { _mm256_storeu_ps(p, v); }
  friend AO_INLINE F32x8 operator+(F32x8 a, F32x8 b) { return {_mm256_add_ps(a.v, b.v)}; }
  friend AO_INLINE F32x8 operator-(F32x8 a, F32x8 b) { return {_mm256_sub_ps(a.v, b.v)}; }
  friend AO_INLINE F32x8 operator*(F32x8 a, F32x8 b) { return {_mm256_mul_ps(a.v, b.v)}; }
  friend AO_INLINE F32x8 operator/(F32x8 a, F32x8 b) { return {_mm256_div_ps(a.v, b.v)}; }
  friend AO_INLINE F32x8 sqrt(F32x8 a) { return {_mm256_sqrt_ps(a.v)}; }
  friend AO_INLINE F32x8 mul_add(F32x8 a, F32x8 b, F32x8 c) { return {AO_MUL_ADD(_mm256, ps, a.v, b.v, c.v)}; }
  friend AO_INLINE F32x8 max_nan(F32x8 a, F32x8 b) { return {_mm256_max_ps(a.v, b.v)}; }
  friend AO_INLINE F32x8 min_nan(F32x8 a, F32x8 b) { return {_mm256_min_ps(a.v, b.v)}; }
  friend AO_INLINE F32x8 max_propagate(F32x8 a, F32x8 b) { return {_mm256_blendv_ps(_mm256_max_ps(a.v, b.v), a.v, _mm256_cmp_ps(a.v, a.v, _CMP_UNORD_Q))}; }
  friend AO_INLINE F32x8 abs(F32x8 a) { return {_mm256_andnot_ps(_mm256_set1_ps(-0.0), a.v)}; }
};
struct F64x4 {
  using Elem = double;
  static constexpr std::size_t kLanes = 4;
  __m256d v;
  static AO_INLINE F64x4 load(const double* p) { return {_mm256_loadu_pd(p)}; }
  static AO_INLINE F64x4 load_from(const double* p) { return load(p); }
  static AO_INLINE F64x4 load_from(const float* p) { return {_mm256_cvtps_pd(_mm_loadu_ps(p))}; }
  static AO_INLINE F64x4 set(double x) { return {_mm256_set1_pd(x)}; }
  AO_INLINE void store(double* p) const { _mm256_storeu_pd(p, v); }
  friend AO_INLINE F64x4 operator+(F64x4 a, F64x4 b) { return {_mm256_add_pd(a.v, b.v)}; }
  friend AO_INLINE F64x4 operator-(F64x4 a, F64x4 b) { return {_mm256_sub_pd(a.v, b.v)}; }
  friend AO_INLINE F64x4 operator*(F64x4 a, F64x4 b) { return {_mm256_mul_pd(a.v, b.v)}; }
  friend AO_INLINE F64x4 operator/(F64x4 a, F64x4 b) { return {_mm256_div_pd(a.v, b.v)}; }
  friend AO_INLINE F64x4 sqrt(F64x4 a) { return {_mm256_sqrt_pd(a.v)}; }
  friend AO_INLINE F64x4 mul_add(F64x4 a, F64x4 b, F64x4 c) { return {AO_MUL_ADD(_mm256, pd, a.v, b.v, c.v)}; }
  friend AO_INLINE F64x4 max_nan(F64x4 a, F64x4 b) { return {_mm256_max_pd(a.v, b.v)}; }
  friend AO_INLINE F64x4 min_nan(F64x4 a, F64x4 b) { return {_mm256_min_pd(a.v, b.v)}; }
  friend AO_INLINE F64x4 max_propagate(F64x4 a, F64x4 b) { return {_mm256_blendv_pd(_mm256_max_pd(a.v, b.v), a.v, _mm256_cmp_pd(a.v, a.v, _CMP_UNORD_Q))}; }
  friend AO_INLINE F64x4 abs(F64x4 a) { return {_mm256_andnot_pd(_mm256_set1_pd(-0.0), a.v)}; }
};
#endif

#if defined(AO_AVX512)  // real or emulated AVX-512: see kernels.inl
struct F32x16 {
  using Elem = float;
  static constexpr std::size_t kLanes = 16;
  __m512 v;
  static AO_INLINE F32x16 load(const float* p) { return {_mm512_loadu_ps(p)}; }
  static AO_INLINE F32x16 set(float x) { return {_mm512_set1_ps(x)}; }
  AO_INLINE void store(float* p) const { _mm512_storeu_ps(p, v); }
  friend AO_INLINE F32x16 operator+(F32x16 a, F32x16 b) { return {_mm512_add_ps(a.v, b.v)}; }
  friend AO_INLINE F32x16 operator-(F32x16 a, F32x16 b) { return {_mm512_sub_ps(a.v, b.v)}; }
  friend AO_INLINE F32x16 operator*(F32x16 a, F32x16 b) { return {_mm512_mul_ps(a.v, b.v)}; }
  friend AO_INLINE F32x16 operator/(F32x16 a, F32x16 b) { return {_mm512_div_ps(a.v, b.v)}; }
  friend AO_INLINE F32x16 sqrt(F32x16 a) { return {_mm512_sqrt_ps(a.v)}; }
  friend AO_INLINE F32x16 mul_add(F32x16 a, F32x16 b, F32x16 c) { return {AO_MUL_ADD(_mm512, ps, a.v, b.v, c.v)}; }
  friend AO_INLINE F32x16 max_nan(F32x16 a, F32x16 b) { return {_mm512_max_ps(a.v, b.v)}; }
  friend AO_INLINE F32x16 min_nan(F32x16 a, F32x16 b) { return {_mm512_min_ps(a.v, b.v)}; }
  friend AO_INLINE F32x16 max_propagate(F32x16 a, F32x16 b) { return {_mm512_mask_blend_ps(_mm512_cmp_ps_mask(a.v, a.v, _CMP_UNORD_Q), _mm512_max_ps(a.v, b.v), a.v)}; }
  friend AO_INLINE F32x16 abs(F32x16 a) { return {_mm512_abs_ps(a.v)}; }
};
struct F64x8 {
  using Elem = double;
  static constexpr std::size_t kLanes = 8;
  __m512d v;
  static AO_INLINE F64x8 load(const double* p) { return {_mm512_loadu_pd(p)}; }
  static AO_INLINE F64x8 load_from(const double* p) { return load(p); }
  static AO_INLINE F64x8 load_from(const float* p) { return {_mm512_cvtps_pd(_mm256_loadu_ps(p))}; }
  static AO_INLINE F64x8 set(double x) { return {_mm512_set1_pd(x)}; }
  AO_INLINE void store(double* p) const { _mm512_storeu_pd(p, v); }
  friend AO_INLINE F64x8 operator+(F64x8 a, F64x8 b) { return {_mm512_add_pd(a.v, b.v)}; }
  friend AO_INLINE F64x8 operator-(F64x8 a, F64x8 b) { return {_mm512_sub_pd(a.v, b.v)}; }
  friend AO_INLINE F64x8 operator*(F64x8 a, F64x8 b) { return {_mm512_mul_pd(a.v, b.v)}; }
  friend AO_INLINE F64x8 operator/(F64x8 a, F64x8 b) { return {_mm512_div_pd(a.v, b.v)}; }
  friend AO_INLINE F64x8 sqrt(F64x8 a) { return {_mm512_sqrt_pd(a.v)}; }
  friend AO_INLINE F64x8 mul_add(F64x8 a, F64x8 b, F64x8 c) { return {AO_MUL_ADD(_mm512, pd, a.v, b.v, c.v)}; }
  friend AO_INLINE F64x8 max_nan(F64x8 a, F64x8 b) { return {_mm512_max_pd(a.v, b.v)}; }
  friend AO_INLINE F64x8 min_nan(F64x8 a, F64x8 b) { return {_mm512_min_pd(a.v, b.v)}; }
  friend AO_INLINE F64x8 max_propagate(F64x8 a, F64x8 b) { return {_mm512_mask_blend_pd(_mm512_cmp_pd_mask(a.v, a.v, _CMP_UNORD_Q), _mm512_max_pd(a.v, b.v), a.v)}; }
  friend AO_INLINE F64x8 abs(F64x8 a) { return {_mm512_abs_pd(a.v)}; }
};
#endif
