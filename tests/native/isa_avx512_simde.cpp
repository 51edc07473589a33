// The AVX-512 kernels compiled a second time against SIMDe's emulation of the AVX-512F
// intrinsics (simde_avx512.h), with the AVX2 flags: runs on any AVX2 + FMA CPU. Test-only.
#include "simde_avx512.h"

#define AO_ISA_NS isa_avx512_simde
#define AO_ISA_NAME "avx512-simde"
#include "kernels/kernels.inl"

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "tables.h"

const adaptopt::KernelTable& adaptopt::test::kernel_table_avx512_simde() { return isa_avx512_simde::table(); }

namespace {

template <class T, class U>
U bits(T x) {
  U u;
  std::memcpy(&u, &x, sizeof u);
  return u;
}
float as_float(std::uint32_t b) { return bits<std::uint32_t, float>(b); }

// Lane inputs: the float bit patterns where conversions, compares and min/max have edge cases
// (zeros, NaNs quiet and signalling, infinities, subnormals, the int32 and float16 range limits
// and rounding ties, integers at the byte and word limits), then random bits, random floats in
// and around the float16 range, and random small integers.
std::vector<std::uint32_t> lane_pool() {
  std::vector<std::uint32_t> v = {
      0x00000000, 0x80000000, 0x7fc00000, 0xffc00000, 0x7fa00000, 0xff800001, 0x7f800000, 0xff800000,
      0x00000001, 0x80000001, 0x007fffff, 0x00800000, 0x7f7fffff, 0xff7fffff, 0x3f000000, 0xbf000000,
      0x3fc00000, 0x40200000, 0xc0200000, 0x3f800000, 0xbf800000, 0x4effffff, 0x4f000000, 0xcf000000,
      0xcf000001, 0x4f800000, 0x5f000000, 0xdf000000, 0x477fe000, 0x477fefff, 0x477ff000, 0x477ff001,
      0x47800000, 0xc77ff000, 0x33800000, 0x33000000, 0x33000001, 0x33400000, 0x387fc000, 0x387fe000,
      0x38800000, 0x38000000, 0x35555555, 0x000000ff, 0x00000100, 0x0000ffff, 0x00010000, 0x7fffffff,
      0xffffffff, 0x12345678, 0x0000007f, 0x00000080, 0xffffff80, 0x00008000, 0xffff8000, 0x3effffff,
      0x3f7fffff, 0x4b000000, 0x4b7fffff, 0x4b800000, 0xcb000001, 0x3fc00001, 0x40400000, 0x40600000};
  std::uint64_t s = 0x243F6A8885A308D3ull;
  auto next = [&s] {
    std::uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  };
  for (int i = 0; i < 4096; ++i) {
    const std::uint64_t r = next();
    switch (i % 4) {
      case 0: v.push_back(static_cast<std::uint32_t>(r)); break;
      case 1: v.push_back(static_cast<std::uint32_t>((r & 0x80000000u) | (((100 + (r >> 40) % 45) << 23)) | (r & 0x7fffffu))); break;
      case 2: v.push_back(static_cast<std::uint32_t>(r & 0x8000ffffu) | ((r >> 32) & 1 ? 0x38000000u : 0x47000000u)); break;
      default: v.push_back(static_cast<std::uint32_t>(r % 600) - 300u); break;
    }
  }
  while (v.size() % 16) v.push_back(0);
  return v;
}

__m512i ld(const std::uint32_t* p) { return _mm512_loadu_si512(p); }
__m512 ldf(const std::uint32_t* p) { return _mm512_castsi512_ps(ld(p)); }
void st(std::uint32_t* p, __m512i v) { _mm512_storeu_si512(p, v); }
void stf(std::uint32_t* p, __m512 v) { st(p, _mm512_castps_si512(v)); }
std::uint8_t* bytes(std::uint32_t* p) { return reinterpret_cast<std::uint8_t*>(p); }
std::uint16_t* words(std::uint32_t* p) { return reinterpret_cast<std::uint16_t*>(p); }

struct IntrinsicChecks {
  int checked = 0;
  long lanes = 0;
  std::vector<std::string> failed;

  // emu(x, y, got) runs the emulated intrinsic on 16 lanes (or 32 words, 64 bytes) of x and y;
  // ref(x, y, want) computes what the instruction does, from Intel's definition or with the
  // narrower hardware instruction (F16C). Every window of 16 lanes of a and b.
  template <class Emu, class Ref>
  void check(const char* name, const std::vector<std::uint32_t>& a, const std::vector<std::uint32_t>& b, Emu emu,
             Ref ref) {
    ++checked;
    int bad = 0;
    for (std::size_t i = 0; i + 16 <= a.size(); i += 16) {
      alignas(64) std::uint32_t x[16], y[16], got[16] = {}, want[16] = {};
      std::memcpy(x, &a[i], sizeof x);
      std::memcpy(y, &b[i], sizeof y);
      emu(x, y, got);
      ref(x, y, want);
      lanes += 16;
      for (int k = 0; k < 16; ++k)
        if (got[k] != want[k] && bad++ < 3)
          std::printf("MISMATCH simde_avx512.h: %s differs from the hardware's definition: inputs lane %d of "
                      "0x%08x... 0x%08x...: emulated 0x%08x, hardware 0x%08x\n",
                      name, k, static_cast<unsigned>(x[k]), static_cast<unsigned>(y[k]), static_cast<unsigned>(got[k]),
                      static_cast<unsigned>(want[k]));
    }
    if (bad) failed.push_back(name);
  }
};

template <int n>
void check_shifts(IntrinsicChecks& c, const std::vector<std::uint32_t>& a) {
  static const std::string r = "_mm512_srli_epi32(" + std::to_string(n) + ")", l = "_mm512_slli_epi32(" + std::to_string(n) + ")";
  c.check(r.c_str(), a, a, [](auto x, auto, auto got) { st(got, _mm512_srli_epi32(ld(x), n)); },
          [](auto x, auto, auto want) { for (int k = 0; k < 16; ++k) want[k] = x[k] >> n; });
  c.check(l.c_str(), a, a, [](auto x, auto, auto got) { st(got, _mm512_slli_epi32(ld(x), n)); },
          [](auto x, auto, auto want) { for (int k = 0; k < 16; ++k) want[k] = x[k] << n; });
}

template <int imm>
void check_cvtps_ph(IntrinsicChecks& c, const std::vector<std::uint32_t>& a, const char* name) {
  c.check(name, a, a, [](auto x, auto, auto got) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(got), _mm512_cvtps_ph(ldf(x), imm)); },
          [](auto x, auto, auto want) {
            for (int q = 0; q < 4; ++q)
              _mm_storel_epi64(reinterpret_cast<__m128i*>(words(want) + 4 * q),
                               _mm_cvtps_ph(_mm_loadu_ps(reinterpret_cast<const float*>(x) + 4 * q), imm & 7));
          });
}

}  // namespace

// The emulated intrinsics against the instructions' definitions: first the replaced ones, on the
// values where SIMDe's own versions go wrong (VPANDD clears the sign of -0.0 and of a NaN;
// VCVTPS2PD widens exactly), then every other one the storage codecs use.
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

  // Every other AVX-512 intrinsic of the storage codecs (storage.h), supplied by simde_avx512.h
  // or by SIMDe itself, lane by lane against the instruction's definition.
  IntrinsicChecks c;
  const std::vector<std::uint32_t> a = lane_pool();
  std::vector<std::uint32_t> b(a.size());
  for (std::size_t i = 0; i < a.size(); ++i) b[i] = a[(i * 7 + 5) % a.size()];
  std::vector<std::uint32_t> halves(32768);  // every float16 bit pattern, two per lane
  for (std::uint32_t i = 0; i < 32768; ++i) halves[i] = (2 * i) | ((2 * i + 1) << 16);
  c.check("_mm512_cvtps_epi32", a, b, [](auto x, auto, auto got) { st(got, _mm512_cvtps_epi32(ldf(x))); },
          [](auto x, auto, auto want) {
            for (int k = 0; k < 16; ++k) {  // nearest even (MXCSR); NaN and out of range: 0x80000000
              const float f = as_float(x[k]);
              want[k] = f >= -2147483648.0f && f < 2147483648.0f
                            ? static_cast<std::uint32_t>(static_cast<std::int32_t>(__builtin_rint(static_cast<double>(f))))
                            : 0x80000000u;
            }
          });
  c.check("_mm512_cvtepi32_ps", a, b, [](auto x, auto, auto got) { stf(got, _mm512_cvtepi32_ps(ld(x))); },
          [](auto x, auto, auto want) {
            for (int k = 0; k < 16; ++k) want[k] = bits<float, std::uint32_t>(static_cast<float>(static_cast<std::int32_t>(x[k])));
          });
  c.check("_mm512_cvtepu8_epi32", a, b,
          [](auto x, auto, auto got) { st(got, _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x)))); },
          [](auto x, auto, auto want) { for (int k = 0; k < 16; ++k) want[k] = bytes(x)[k]; });
  c.check("_mm512_cvtepu16_epi32", a, b,
          [](auto x, auto, auto got) { st(got, _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x)))); },
          [](auto x, auto, auto want) { for (int k = 0; k < 16; ++k) want[k] = words(x)[k]; });
  c.check("_mm512_cvtepi32_epi16", a, b,
          [](auto x, auto, auto got) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(got), _mm512_cvtepi32_epi16(ld(x))); },
          [](auto x, auto, auto want) { for (int k = 0; k < 16; ++k) words(want)[k] = static_cast<std::uint16_t>(x[k]); });
  c.check("_mm512_cvtepi32_epi8", a, b,
          [](auto x, auto, auto got) { _mm_storeu_si128(reinterpret_cast<__m128i*>(got), _mm512_cvtepi32_epi8(ld(x))); },
          [](auto x, auto, auto want) { for (int k = 0; k < 16; ++k) bytes(want)[k] = static_cast<std::uint8_t>(x[k]); });
  const std::vector<std::uint32_t>* const half_inputs[] = {&a, &halves};
  for (const std::vector<std::uint32_t>* in : half_inputs)
    c.check("_mm512_cvtph_ps", *in, *in,
            [](auto x, auto, auto got) { stf(got, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x)))); },
            [](auto x, auto, auto want) {
              for (int q = 0; q < 4; ++q)
                _mm_storeu_ps(reinterpret_cast<float*>(want) + 4 * q,
                              _mm_cvtph_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(words(x) + 4 * q))));
            });
  check_cvtps_ph<_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC>(c, a, "_mm512_cvtps_ph(nearest)");
  check_cvtps_ph<_MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC>(c, a, "_mm512_cvtps_ph(toward zero)");
  c.check("_mm512_cmplt_epu32_mask", a, b, [](auto x, auto y, auto got) { got[0] = _mm512_cmplt_epu32_mask(ld(x), ld(y)); },
          [](auto x, auto y, auto want) { for (int k = 0; k < 16; ++k) want[0] |= (x[k] < y[k] ? 1u : 0u) << k; });
  c.check("_mm512_cmpeq_epu32_mask", a, a, [](auto x, auto y, auto got) { got[0] = _mm512_cmpeq_epu32_mask(ld(x), ld(y)); },
          [](auto x, auto y, auto want) { for (int k = 0; k < 16; ++k) want[0] |= (x[k] == y[k] ? 1u : 0u) << k; });
  c.check("_mm512_cmpeq_epu32_mask", a, b, [](auto x, auto y, auto got) { got[0] = _mm512_cmpeq_epu32_mask(ld(x), ld(y)); },
          [](auto x, auto y, auto want) { for (int k = 0; k < 16; ++k) want[0] |= (x[k] == y[k] ? 1u : 0u) << k; });
  c.check("_mm512_cmp_ps_mask(LT_OQ)", a, b, [](auto x, auto y, auto got) { got[0] = _mm512_cmp_ps_mask(ldf(x), ldf(y), _CMP_LT_OQ); },
          [](auto x, auto y, auto want) {
            for (int k = 0; k < 16; ++k) want[0] |= (as_float(x[k]) < as_float(y[k]) ? 1u : 0u) << k;
          });
  c.check("_mm512_cmp_ps_mask(UNORD_Q)", a, b, [](auto x, auto y, auto got) { got[0] = _mm512_cmp_ps_mask(ldf(x), ldf(y), _CMP_UNORD_Q); },
          [](auto x, auto y, auto want) {
            for (int k = 0; k < 16; ++k) want[0] |= (as_float(x[k]) != as_float(x[k]) || as_float(y[k]) != as_float(y[k]) ? 1u : 0u) << k;
          });
  c.check("_mm512_max_ps", a, b, [](auto x, auto y, auto got) { stf(got, _mm512_max_ps(ldf(x), ldf(y))); },
          [](auto x, auto y, auto want) {  // MAXPS: the second operand unless the first is greater
            for (int k = 0; k < 16; ++k) want[k] = as_float(x[k]) > as_float(y[k]) ? x[k] : y[k];
          });
  c.check("_mm512_min_ps", a, b, [](auto x, auto y, auto got) { stf(got, _mm512_min_ps(ldf(x), ldf(y))); },
          [](auto x, auto y, auto want) {
            for (int k = 0; k < 16; ++k) want[k] = as_float(x[k]) < as_float(y[k]) ? x[k] : y[k];
          });
  c.check("_mm512_max_epu32", a, b, [](auto x, auto y, auto got) { st(got, _mm512_max_epu32(ld(x), ld(y))); },
          [](auto x, auto y, auto want) { for (int k = 0; k < 16; ++k) want[k] = x[k] > y[k] ? x[k] : y[k]; });
  c.check("_mm512_min_epu32", a, b, [](auto x, auto y, auto got) { st(got, _mm512_min_epu32(ld(x), ld(y))); },
          [](auto x, auto y, auto want) { for (int k = 0; k < 16; ++k) want[k] = x[k] < y[k] ? x[k] : y[k]; });
  c.check("_mm512_mullo_epi32", a, b, [](auto x, auto y, auto got) { st(got, _mm512_mullo_epi32(ld(x), ld(y))); },
          [](auto x, auto y, auto want) { for (int k = 0; k < 16; ++k) want[k] = x[k] * y[k]; });
  c.check("_mm512_add_epi32", a, b, [](auto x, auto y, auto got) { st(got, _mm512_add_epi32(ld(x), ld(y))); },
          [](auto x, auto y, auto want) { for (int k = 0; k < 16; ++k) want[k] = x[k] + y[k]; });
  c.check("_mm512_sub_epi32", a, b, [](auto x, auto y, auto got) { st(got, _mm512_sub_epi32(ld(x), ld(y))); },
          [](auto x, auto y, auto want) { for (int k = 0; k < 16; ++k) want[k] = x[k] - y[k]; });
  c.check("_mm512_mask_blend_epi32", a, b,
          [](auto x, auto y, auto got) { st(got, _mm512_mask_blend_epi32(static_cast<__mmask16>(x[0] ^ y[1]), ld(x), ld(y))); },
          [](auto x, auto y, auto want) {
            for (int k = 0; k < 16; ++k) want[k] = ((x[0] ^ y[1]) >> k) & 1u ? y[k] : x[k];
          });
  c.check("_mm512_mask_blend_ps", a, b,
          [](auto x, auto y, auto got) { stf(got, _mm512_mask_blend_ps(static_cast<__mmask16>(x[2] ^ y[3]), ldf(x), ldf(y))); },
          [](auto x, auto y, auto want) {
            for (int k = 0; k < 16; ++k) want[k] = ((x[2] ^ y[3]) >> k) & 1u ? y[k] : x[k];
          });
  c.check("_mm512_setr_epi32", a, b,
          [](auto x, auto, auto got) {
            st(got, _mm512_setr_epi32(x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7], x[8], x[9], x[10], x[11], x[12],
                                      x[13], x[14], x[15]));
          },
          [](auto x, auto, auto want) { for (int k = 0; k < 16; ++k) want[k] = x[k]; });
  check_shifts<7>(c, a);
  check_shifts<8>(c, a);
  check_shifts<13>(c, a);
  check_shifts<16>(c, a);
  check_shifts<20>(c, a);
  check_shifts<24>(c, a);
  check_shifts<31>(c, a);
  std::printf("kernel_diff: SIMDe: %d checks of the AVX-512 intrinsics of the storage codecs against the instructions' "
              "definitions, %ld lanes (float16 conversions against F16C, every float16 value): %s\n",
              c.checked, c.lanes, c.failed.empty() ? "ok" : "FAIL");
  return ok && c.failed.empty();
}
