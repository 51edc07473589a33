// Native test driver: every kernel table this CPU can run, compared element by element with its
// bit-exact reference over every rule of the registry and every storage combination the kernel
// table has (param dtype x state kind x param mode: the null entries are skipped), every
// combination of the rule's option flags, hyperparameters that take every branch, several step
// numbers, sizes around each vector width and 8-bit block, unaligned starts and addresses. Also
// the bandwidth probe of every (dtype, state kind), sumsq of every gradient dtype and the 8-bit
// codec on its own. See README.md.
//
//   kernel_diff [--quick] [--max-reports N]
//
// Exit status: 0 when every comparison that ran matched, 1 on any mismatch, 2 on a usage error.
#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "adaptopt/kernels.h"
#include "rules/registry.h"
#include "tables.h"

namespace {

using namespace adaptopt;

// ------------------------------------------------------------------------------------ options
struct Options {
  bool quick = false;       // the base hyperparameters and a few sizes only (for slow emulators)
  long max_reports = 10;    // mismatches printed in full
};
Options g_opt;

// ---------------------------------------------------------------------------------- the sweep
// Hyperparameter values by field name; the first is the base value, each other value is tried
// with the rest at their base (and with every flag combination). Chosen to take every branch:
// 0 and > 0 where a rule tests != 0, 1 - beta on both sides of 0.5 (lerp_ema's two forms), an
// alpha of 0 (the centered variance cancels to 0). A field of a new rule that is not listed here
// gets kFallback, and the driver says so.
struct FieldValues {
  const char* name;
  std::vector<double> values;
};
const std::vector<FieldValues>& field_values() {
  static const std::vector<FieldValues> v = {
      {"alpha", {0.99, 0.3, 0.0}},
      {"beta1", {0.9, 0.2, 0.0}},
      {"beta2", {0.999, 0.9}},
      {"rho", {0.9, 0.3}},
      {"eps", {1e-8, 1e-3}},
      {"eps_root", {0.0, 1e-6}},
      {"momentum", {0.0, 0.9}},
      {"dampening", {0.0, 0.3}},
      {"initial_scale", {0.0, 1.0}},
      {"lr_decay", {0.0, 0.01}},
      {"initial_accumulator_value", {0.0, 0.1}},
      {"momentum_decay", {0.004, 0.1}},
  };
  return v;
}
const std::vector<double> kFallback = {0.9, 0.0};

const std::vector<double>& values_of(const char* field, bool* known) {
  for (const auto& f : field_values())
    if (std::strcmp(f.name, field) == 0) {
      *known = true;
      return f.values;
    }
  *known = false;
  return kFallback;
}

constexpr double kLr = 0.01;
const double kWeightDecay[] = {0.0, 0.05};  // with and without decoupled_weight_decay (a flag)
const double kGradScale[] = {1.0, 0.3};
// Step 1 starts from the slots' initial values with every slot fresh (SGD copies g into a new
// momentum buffer); later steps start from a state two reference steps produced. RAdam is
// rectified from step 6 with beta2 0.999 or 0.9, not at step 1.
const std::int64_t kSteps[] = {1, 6, 1000};
constexpr int kWarmupSteps = 2;
constexpr std::size_t kGuard = 16;  // elements after the range (and after the tensor), which must stay untouched
constexpr std::size_t kQ = kQBlockElements;

// 0, 1, lanes-1, lanes, lanes+1, 3*lanes+5 for every width (4, 8, 16), and one size past the
// statistics flush (every 256 vector blocks: 4096 float32 elements under AVX-512).
std::vector<std::size_t> sizes() {
  std::vector<std::size_t> s = {0, 1};
  for (std::size_t lanes : {4, 8, 16})
    for (std::size_t n : {lanes - 1, lanes, lanes + 1, 3 * lanes + 5}) s.push_back(n);
  s.push_back(4096 + 3 * 16 + 5);
  std::sort(s.begin(), s.end());
  s.erase(std::unique(s.begin(), s.end()), s.end());
  if (g_opt.quick) s = {0, 1, 7, 17, 53, 300};
  return s;
}
// 8-bit state: ranges start on a block boundary, so sizes around each width for the tail of the
// last (partial) block, and around one and several blocks of 256.
constexpr std::size_t kBig = 4096;  // sizes above this (past the statistics flush) are sampled less often
std::vector<std::size_t> q8_sizes() {
  std::vector<std::size_t> s = {0, 1, 7, 15, 16, 17, 53, 255, 256, 257, 300, 512, 771, 4149};
  if (g_opt.quick) s = {0, 7, 256, 300, 771};
  return s;
}

// Stochastic rounding: keys, and index bases (TensorRef::index) relative to the range's first
// element: 0, crossing 2^32 three elements into the range (within the first vector), crossing
// 2^33 at element 37 (lane 5 of a later vector), wrapping 2^64, and an arbitrary large one.
const std::uint64_t kKeys[] = {0, 0x0123456789ABCDEFull, ~0ull, 0x9E3779B97F4A7C15ull};
constexpr int kNumKeys = 4;
constexpr int kNumIndexBases = 5;
std::uint64_t index_base_value(int which, std::size_t begin) {
  switch (which) {
    case 0: return 0;
    case 1: return (1ull << 32) - 3 - begin;
    case 2: return (2ull << 32) - 37 - begin;
    case 3: return 0ull - 5 - begin;
    default: return 0x00005A5A12345678ull;
  }
}
const char* index_base_name(int which) {
  static const char* const n[] = {"0", "2^32-3", "2^33-37", "2^64-5", "0x5a5a12345678"};
  return n[which];
}

// ------------------------------------------------------------------------------------ helpers
struct Rng {
  std::uint64_t s;
  std::uint64_t next() {  // splitmix64
    std::uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  std::uint64_t below(std::uint64_t n) {  // multiply-shift: no division
    return static_cast<std::uint64_t>((static_cast<unsigned __int128>(next()) * n) >> 64);
  }
};

template <class T>
using Bits = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;

template <class T>
Bits<T> bits_of(T x) {
  Bits<T> b;
  std::memcpy(&b, &x, sizeof b);
  return b;
}
template <class T>
T from_bits(Bits<T> b) {
  T x;
  std::memcpy(&x, &b, sizeof x);
  return x;
}

// Bit for bit, except that every NaN equals every NaN: which NaN an operation with two NaN
// operands returns depends on their order (x86 returns the first), which the compiler may choose
// differently in each build for a commutative operation or an FMA form, and GCC folds x * -1 into
// a sign flip in some builds and not in others. NaN payload and sign are no kernel property.
template <class T>
bool same_bits(T a, T b) {
  return bits_of(a) == bits_of(b) || (a != a && b != b);
}

template <class T>
std::string show(T x) {
  char buf[96];
  if constexpr (sizeof(T) == 4)
    std::snprintf(buf, sizeof buf, "0x%08" PRIx32 " (%.9g)", bits_of(x), static_cast<double>(x));
  else
    std::snprintf(buf, sizeof buf, "0x%016" PRIx64 " (%.17g)", bits_of(x), x);
  return buf;
}
std::string show_double(double x) { return show<double>(x); }

// Input values. "ordinary": finite, moderate, with zeros of both signs, small integers and a
// spread of magnitudes. "extreme": a third of the elements of every buffer replaced by NaN, +-Inf,
// huge, subnormal or tiny values (in the buffer's storage type). "tiny": every value subnormal
// (of its storage type) or zero, so that whole 8-bit blocks have a subnormal absmax. Every NaN
// input is the x86 default NaN (the one invalid operations produce), so that every NaN inside a
// computation has the same bits, except where a kernel changes them (abs): with two different
// NaN operands x86 returns the first, and a compiler may order the operands of a commutative
// operation differently in each build.
enum class Inputs { Ordinary = 0, Extreme = 1, Tiny = 2 };
constexpr int kNumInputs = 3;
const char* inputs_name(Inputs c) {
  return c == Inputs::Ordinary ? "ordinary" : c == Inputs::Extreme ? "extreme" : "tiny";
}

// 10^(8 k / 4096 - 4): magnitudes from 1e-4 to 1e4 without a pow per element.
const double* pow10_table() {
  static const std::vector<double> t = [] {
    std::vector<double> v(4097);
    for (std::size_t k = 0; k < v.size(); ++k) v[k] = std::pow(10.0, 8.0 * static_cast<double>(k) / 4096.0 - 4.0);
    return v;
  }();
  return t.data();
}

// One random word per value: bits 0-9 pick the class, 10-22 the small integer or the power of
// ten, 24-63 the mantissa.
template <class T>
T ordinary(Rng& r) {
  const std::uint64_t z = r.next();
  const unsigned cls = z & 1023u;
  if (cls < 41) return T(0);                                                    // 4%
  if (cls < 61) return T(-0.0);                                                 // 2%
  if (cls < 143) return T(static_cast<double>(((z >> 10) & 0xffffu) * 9 >> 16) - 4.0);  // 8%: -4..4
  double x = (static_cast<double>(z >> 24) * 0x1.0p-39 - 1.0) * 3.0;            // (-3, 3)
  if (cls >= 847) x *= pow10_table()[(z >> 10) & 4095u];                        // one in five of the rest
  return T(x);
}

// The x86 "QNaN floating-point indefinite" that invalid operations return: sign bit set.
template <class T>
T default_nan() {
  if constexpr (sizeof(T) == 4) return from_bits<T>(0xffc00000u);
  else return from_bits<T>(0xfff8000000000000ULL);
}

template <class T>
T extreme(Rng& r) {
  using L = std::numeric_limits<T>;
  const double sign = (r.next() & 1) ? -1.0 : 1.0;
  switch (r.below(10)) {
    case 0: return default_nan<T>();
    case 1: return L::infinity();
    case 2: return -L::infinity();
    case 3: return T(sign * static_cast<double>(L::max()) * (0.5 + 0.5 * r.uniform()));
    case 4: return T(sign * std::pow(10.0, (0.6 + 0.4 * r.uniform()) * L::max_exponent10));
    case 5: return T(sign * static_cast<double>(L::denorm_min()) * static_cast<double>(1 + r.below(1000)));
    case 6: return T(sign * static_cast<double>(L::min()) * (1.0 + r.uniform()));
    case 7: return T(sign * std::pow(10.0, (0.6 + 0.35 * r.uniform()) * L::min_exponent10));
    case 8: return T(sign * 0.0);
    default: return ordinary<T>(r);
  }
}

// --------------------------------------------------------------------------- storage kinds
// What a buffer holds: the param/gradient dtypes, float32/float64 state, bfloat16 state, or
// 8-bit codes (whose per-block absmax is a float32 buffer).
enum class Kind { F32, F64, F16, BF16, U8 };
std::size_t width(Kind k) {
  switch (k) {
    case Kind::F32: return 4;
    case Kind::F64: return 8;
    case Kind::F16:
    case Kind::BF16: return 2;
    default: return 1;
  }
}
const char* kind_name(Kind k) {
  static const char* const n[] = {"float32", "float64", "float16", "bfloat16", "uint8"};
  return n[static_cast<int>(k)];
}
Kind param_kind(DType d) {
  switch (d) {
    case DType::F32: return Kind::F32;
    case DType::F64: return Kind::F64;
    case DType::F16: return Kind::F16;
    default: return Kind::BF16;
  }
}
Kind slot_kind(DType d, StateKind s) {
  if (s == StateKind::Math) return d == DType::F64 ? Kind::F64 : Kind::F32;
  return s == StateKind::BF16 ? Kind::BF16 : Kind::U8;
}
const char* dtype_name(int d) {
  static const char* const n[] = {"f32", "f64", "f16", "bf16"};
  return n[d];
}
const char* state_name(int s) {
  static const char* const n[] = {"math", "bf16", "q8"};
  return n[s];
}
const char* mode_name(int m) {
  static const char* const n[] = {"round", "master", "stochastic"};
  return n[m];
}

// 16-bit values: float32 rounded to nearest even (float16 by the compiler's _Float16, which is
// libgcc's software conversion here, independent of the kernels' F16C and codecs).
std::uint16_t f16_of(float x) {
  const _Float16 h = static_cast<_Float16>(x);
  std::uint16_t b;
  std::memcpy(&b, &h, sizeof b);
  return b;
}
float f16_value(std::uint16_t b) {
  _Float16 h;
  std::memcpy(&h, &b, sizeof b);
  return static_cast<float>(h);
}
std::uint16_t bf16_of(float x) {
  const std::uint32_t b = bits_of(x);
  if ((b & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((b >> 16) | 0x40u);
  return static_cast<std::uint16_t>((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);
}
float bf16_value(std::uint16_t b) { return from_bits<float>(static_cast<std::uint32_t>(b) << 16); }

// An element's bits, whatever the kind.
std::uint64_t load_raw(Kind k, const unsigned char* base, std::size_t i) {
  std::uint64_t v = 0;
  std::memcpy(&v, base + i * width(k), width(k));  // little endian
  return v;
}
void store_raw(Kind k, unsigned char* base, std::size_t i, std::uint64_t v) {
  std::memcpy(base + i * width(k), &v, width(k));
}
bool is_nan_raw(Kind k, std::uint64_t b) {
  switch (k) {
    case Kind::F32: return (b & 0x7fffffffu) > 0x7f800000u;
    case Kind::F64: return (b & 0x7fffffffffffffffull) > 0x7ff0000000000000ull;
    case Kind::F16: return (b & 0x7fffu) > 0x7c00u;
    case Kind::BF16: return (b & 0x7fffu) > 0x7f80u;
    default: return false;
  }
}
double value_raw(Kind k, std::uint64_t b) {
  switch (k) {
    case Kind::F32: return from_bits<float>(static_cast<std::uint32_t>(b));
    case Kind::F64: return from_bits<double>(b);
    case Kind::F16: return f16_value(static_cast<std::uint16_t>(b));
    case Kind::BF16: return bf16_value(static_cast<std::uint16_t>(b));
    default: return static_cast<double>(b);
  }
}
std::string show_raw(Kind k, std::uint64_t b) {
  char buf[96];
  std::snprintf(buf, sizeof buf, "0x%0*" PRIx64 " (%.9g)", static_cast<int>(2 * width(k)), b, value_raw(k, b));
  return buf;
}
// A double value stored in kind k (through float32 for the 16-bit kinds).
std::uint64_t raw_of(Kind k, double v) {
  switch (k) {
    case Kind::F32: return bits_of(static_cast<float>(v));
    case Kind::F64: return bits_of(v);
    case Kind::F16: return f16_of(static_cast<float>(v));
    case Kind::BF16: return bf16_of(static_cast<float>(v));
    default: return static_cast<std::uint64_t>(v) & 0xffu;
  }
}

std::uint64_t ordinary_raw(Kind k, Rng& r) {
  if (k == Kind::U8) return r.below(256);
  return raw_of(k, ordinary<double>(r));
}
// NaN (the default NaN as F16C and the bfloat16 rounding narrow it), +-Inf, the largest finite
// value and values near it, subnormals, the smallest normals, zeros.
std::uint64_t extreme_raw(Kind k, Rng& r) {
  switch (k) {
    case Kind::F32: return bits_of(extreme<float>(r));
    case Kind::F64: return bits_of(extreme<double>(r));
    case Kind::U8: return r.below(256);
    default: break;
  }
  const bool bf = k == Kind::BF16;
  const std::uint64_t sign = (r.next() & 1) ? 0x8000u : 0u;
  const std::uint64_t inf = bf ? 0x7f80u : 0x7c00u, mant = bf ? 0x7fu : 0x3ffu, min_normal = mant + 1;
  switch (r.below(10)) {
    case 0: return bf ? 0xffc0u : 0xfe00u;
    case 1: return inf;
    case 2: return 0x8000u | inf;
    case 3: return sign | (inf - 1);  // the largest finite value
    case 4: return sign | (inf - 1 - r.below(mant + 1));
    case 5: return sign | (1 + r.below(mant));  // subnormal
    case 6: return sign | (min_normal + r.below(mant + 1));
    case 7: return sign | (min_normal + r.below(8 * (mant + 1)));
    case 8: return sign;
    default: return ordinary_raw(k, r);
  }
}
// Subnormal (of kind k) or zero.
std::uint64_t tiny_raw(Kind k, Rng& r) {
  const bool neg = r.next() & 1;
  const bool zero = r.below(6) == 0;
  switch (k) {
    case Kind::F32: return (neg ? 0x80000000u : 0u) | (zero ? 0u : 1 + r.below(r.below(2) ? 0x7fffffu : 64));
    case Kind::F64:
      return (neg ? 0x8000000000000000ull : 0u) | (zero ? 0u : 1 + r.below(r.below(2) ? 0xfffffffffffffull : 64));
    case Kind::F16: return (neg ? 0x8000u : 0u) | (zero ? 0u : 1 + r.below(0x3ffu));
    case Kind::BF16: return (neg ? 0x8000u : 0u) | (zero ? 0u : 1 + r.below(0x7fu));
    default: return r.below(256);
  }
}
std::uint64_t input_raw(Kind k, Inputs c, Rng& r) {
  switch (c) {
    case Inputs::Ordinary: return ordinary_raw(k, r);
    case Inputs::Tiny: return tiny_raw(k, r);
    default: return r.below(3) == 0 ? extreme_raw(k, r) : ordinary_raw(k, r);
  }
}
// A block's absmax, as a state dict may hold it: finite and >= 0.
float absmax_value(Inputs c, Rng& r) {
  if (c == Inputs::Tiny) return r.below(8) == 0 ? 0.0f : from_bits<float>(static_cast<std::uint32_t>(1 + r.below(0x7fffff)));
  if (c == Inputs::Extreme && r.below(3) == 0) {
    switch (r.below(6)) {
      case 0: return 0.0f;
      case 1: return from_bits<float>(static_cast<std::uint32_t>(1 + r.below(1000)));
      case 2: return std::numeric_limits<float>::min() * static_cast<float>(1.0 + r.uniform());
      case 3: return std::numeric_limits<float>::max();
      case 4: return std::numeric_limits<float>::max() * static_cast<float>(0.5 + 0.5 * r.uniform());
      default: return static_cast<float>(std::pow(10.0, 30.0 + 8.0 * r.uniform()));
    }
  }
  return static_cast<float>(std::fabs(ordinary<double>(r)) + 1e-3);
}

// Bytes a kernel never writes: a signalling NaN, which no arithmetic produces (any byte for codes).
std::uint64_t sentinel_raw(Kind k) {
  switch (k) {
    case Kind::F32: return 0x7fa0beefu;
    case Kind::F64: return 0x7ff4beefbeefbeefull;
    case Kind::F16: return 0x7d5au;
    case Kind::BF16: return 0x7fa5u;
    default: return 0xa5u;
  }
}

// A buffer: kLead bytes, `shift` elements, then element 0 (so element 0 is misaligned by
// shift * width bytes from a 64-byte boundary), `len` elements. Everything starts as sentinels.
constexpr std::size_t kLead = 64;
struct Arr {
  Kind kind = Kind::F32;
  std::unique_ptr<unsigned char[], void (*)(void*)> mem{nullptr, std::free};
  std::size_t cap = 0, bytes = 0, off = 0, len = 0;

  void setup(Kind k, std::size_t n, std::size_t shift) {
    kind = k;
    len = n;
    off = kLead + shift * width(k);
    bytes = off + n * width(k);
    if (bytes > cap) {
      cap = (bytes + 4096 + 63) / 64 * 64;
      mem.reset(static_cast<unsigned char*>(std::aligned_alloc(64, cap)));
      if (!mem) {
        std::fprintf(stderr, "kernel_diff: out of memory\n");
        std::exit(2);
      }
    }
    unsigned char pattern[64];
    for (std::size_t i = 0; i < 64 / width(k); ++i) store_raw(k, pattern, i, sentinel_raw(k));
    for (std::size_t i = 0; i < bytes; i += 64) std::memcpy(mem.get() + i, pattern, std::min<std::size_t>(64, bytes - i));
  }
  void copy_from(const Arr& o) {
    kind = o.kind;
    len = o.len;
    off = o.off;
    if (o.bytes > cap) {
      cap = o.cap;
      mem.reset(static_cast<unsigned char*>(std::aligned_alloc(64, cap)));
    }
    bytes = o.bytes;
    std::memcpy(mem.get(), o.mem.get(), bytes);
  }
  unsigned char* at0() const { return mem.get() + off; }
  std::uint64_t get(std::size_t i) const { return load_raw(kind, at0(), i); }
  void set(std::size_t i, std::uint64_t v) { store_raw(kind, at0(), i, v); }
  template <class F>
  void fill(std::size_t lo, std::size_t hi, F&& f) {
    switch (width(kind)) {
      case 1: fill_as<std::uint8_t>(lo, hi, f); break;
      case 2: fill_as<std::uint16_t>(lo, hi, f); break;
      case 4: fill_as<std::uint32_t>(lo, hi, f); break;
      default: fill_as<std::uint64_t>(lo, hi, f); break;
    }
  }

 private:
  template <class U, class F>
  void fill_as(std::size_t lo, std::size_t hi, F& f) {
    unsigned char* q = at0();
    for (std::size_t i = lo; i < hi; ++i) {
      const U v = static_cast<U>(f(i));
      std::memcpy(q + i * sizeof(U), &v, sizeof(U));
    }
  }
};

std::string flag_names(unsigned flags) {
  static const char* const names[] = {
#define AO_X(name) #name,
      AO_FLAGS(AO_X)
#undef AO_X
  };
  std::string s;
  for (int i = 0; i < kNumFlags; ++i)
    if (flags & (1u << i)) s += (s.empty() ? "" : "|") + std::string(names[i]);
  return s.empty() ? "none" : s;
}

bool same_class(double a, double b) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
  if (std::isinf(a) || std::isinf(b)) return a == b;
  return true;
}
// |a - b| <= rtol * max(|a|, |b|), NaN matching NaN and an infinity only itself.
bool close(double a, double b, double rtol) {
  if (!same_class(a, b)) return false;
  if (!std::isfinite(a)) return true;
  return std::fabs(a - b) <= rtol * std::max(std::fabs(a), std::fabs(b));
}

// ------------------------------------------------------------------------------------- tables
struct Table {
  const char* name;
  const KernelTable* k;
};

// How a table's results must relate to its reference's.
//   Exact: params and every slot bit for bit, the probe and the codec too; statistics and sumsq,
//     whose reduction order follows the vector width, within a tolerance.
//   Identical: everything bit for bit, statistics and sumsq too (same width, same operations).
//   ProbeOnly: the probe, sumsq and the codec only, as Exact (the production scalar table and the
//     fused reference differ in every rule's mul_add; these have none).
enum class Mode { Exact, Identical, ProbeOnly };

struct Pair {
  int a, b;  // indices into the table list: a is checked against b
  Mode mode;
  std::string label;
  long cases = 0, elements = 0, reductions = 0, mismatches = 0;
  long probes = 0, codecs = 0;
  long nan_bits = 0;  // elements NaN in both with a different sign or payload (equal, see same_bits)
};

// The first max_reports mismatches of each pair are printed in full; the rest are counted.
// describe() builds the message only when it is printed.
long g_other_failures = 0;  // writes outside a range, missing or extra table entries
template <class F>
void report(Pair& pr, F&& describe) {
  ++pr.mismatches;
  if (pr.mismatches <= g_opt.max_reports) std::printf("MISMATCH %s: %s\n", pr.label.c_str(), describe().c_str());
  else if (pr.mismatches == g_opt.max_reports + 1)
    std::printf("(further mismatches of %s counted, not printed)\n", pr.label.c_str());
}
template <class F>
void report_other(F&& describe) {
  ++g_other_failures;
  if (g_other_failures <= g_opt.max_reports) std::printf("MISMATCH %s\n", describe().c_str());
}

// Tolerances for reductions in a different order (statistics, sumsq): float32 statistics add up
// to 256 vector blocks in float before moving to double; sums of squares are in double.
double stats_rtol(DType d) { return d == DType::F64 ? 1e-12 : 1e-4; }
constexpr double kSumsqRtol = 1e-12;

// Elements [lo, hi) of two buffers of the same kind, bit for bit (NaN = NaN); calls bad(i) for
// each element that differs. Counts the compared elements and the NaNs with other bits.
template <class F>
void compare_range(Pair& pr, const Arr& x, const Arr& y, std::size_t lo, std::size_t hi, F&& bad) {
  if (hi <= lo) return;
  pr.elements += static_cast<long>(hi - lo);
  const std::size_t w = width(x.kind);
  if (std::memcmp(x.at0() + lo * w, y.at0() + lo * w, (hi - lo) * w) == 0) return;
  for (std::size_t i = lo; i < hi; ++i) {
    const std::uint64_t a = x.get(i), b = y.get(i);
    if (a == b) continue;
    if (is_nan_raw(x.kind, a) && is_nan_raw(x.kind, b)) ++pr.nan_bits;
    else bad(i);
  }
}

// True when nothing outside the written element range [lo, hi) of `out` differs from `in` (lo ==
// hi: the whole buffer is read-only); otherwise *where is the first element that differs
// (relative to element 0: negative in the lead bytes).
bool untouched(const Arr& out, const Arr& in, std::size_t lo, std::size_t hi, long* where) {
  const std::size_t w = width(in.kind);
  const std::size_t a = hi > lo ? in.off + lo * w : in.bytes, b = hi > lo ? in.off + hi * w : in.bytes;
  auto first_diff = [&](std::size_t from, std::size_t to) -> long {
    if (to <= from || std::memcmp(out.mem.get() + from, in.mem.get() + from, to - from) == 0) return -1;
    std::size_t i = from;
    while (out.mem.get()[i] == in.mem.get()[i]) ++i;
    return static_cast<long>(i);
  };
  long byte = first_diff(0, a);
  if (byte < 0) byte = first_diff(b, in.bytes);
  if (byte < 0) return true;
  const long rel = byte - static_cast<long>(in.off), lw = static_cast<long>(w);
  *where = rel >= 0 ? rel / lw : -((-rel + lw - 1) / lw);
  return false;
}

// ---------------------------------------------------------------------------- one rule case
struct RuleCase {
  const RuleInfo* rule;
  Hyper h;
  std::int64_t step;
  Inputs inputs;
  DType dtype;
  StateKind state;
  ParamMode mode;
  std::size_t n, begin, tensor_n;  // the range [begin, begin + n) of a tensor of tensor_n elements
  std::size_t shift;               // elements between a 64-byte boundary and element 0 (8-bit state)
  bool stats;
  bool pass_unneeded;  // slots the update does not use are passed too (they must stay untouched)
  bool master_consistent;
  int key, index_base;
  std::uint64_t seed;

  std::uint64_t key_value() const { return kKeys[key]; }
  std::uint64_t index_value() const { return index_base_value(index_base, begin); }

  std::string describe() const {
    std::string s = std::string("rule ") + rule->name + ", " + kind_name(param_kind(dtype)) + " params, " +
                    state_name(static_cast<int>(state)) + " state, " + mode_name(static_cast<int>(mode));
    char buf[160];
    if (mode == ParamMode::Stochastic) {
      std::snprintf(buf, sizeof buf, " (key 0x%" PRIx64 ", index 0x%" PRIx64 ")", key_value(), index_value());
      s += buf;
    }
    if (mode == ParamMode::Master) s += master_consistent ? " (param = RNE(master))" : " (param unrelated to master)";
    s += ", flags " + flag_names(h.common.flags) + ", ";
    for (std::size_t f = 0; f < rule->fields.size(); ++f) {
      std::snprintf(buf, sizeof buf, "%s=%g ", rule->fields[f], h.params[f]);
      s += buf;
    }
    std::snprintf(buf, sizeof buf, "lr=%g weight_decay=%g grad_scale=%g", h.common.lr, h.common.weight_decay,
                  h.grad_scale);
    s += buf;
    std::snprintf(buf, sizeof buf, ", step %lld, %s inputs, n=%zu begin=%zu tensor=%zu address shift=%zu, stats %s",
                  static_cast<long long>(step), inputs_name(inputs), n, begin, tensor_n, shift, stats ? "on" : "off");
    s += buf;
    if (pass_unneeded) s += ", unused slots passed";
    return s;
  }
};

struct Work {
  Arr p, g, master, s[kMaxSlots], q[kMaxSlots];
};

class RuleRunner {
 public:
  RuleRunner(std::vector<Table>& tables, std::vector<Pair>& pairs, const std::vector<bool>& active)
      : tables_(tables), pairs_(pairs), active_(active) {
    out_.resize(tables.size());
    st_.resize(tables.size());
  }

  void run(const RuleCase& c) {
    const int r = static_cast<int>(c.rule->id), d = static_cast<int>(c.dtype), sk_i = static_cast<int>(c.state),
              m = static_cast<int>(c.mode);
    const Kind pk = param_kind(c.dtype), sk = slot_kind(c.dtype, c.state);
    const bool q8 = c.state == StateKind::Q8, master_mode = c.mode == ParamMode::Master;
    const std::size_t b = c.begin, e = c.begin + c.n, tn = c.tensor_n, cap = tn + kGuard;
    const std::size_t nblk = (tn + kQ - 1) / kQ;
    const unsigned needed = needed_slots(c.h);
    const std::size_t nslots = c.rule->slots.size();
    const unsigned uns = c.rule->unsigned_slots;
    Rng rng{c.seed};
    auto sh = [&](int k) -> std::size_t { return q8 ? (c.shift + 5 * static_cast<std::size_t>(k)) % 16 : 0; };

    // Inputs: sentinels around [begin, end), params (and the master), the slots' initial values
    // (8-bit: encoded by the reference's q8_encode), then (after step 1) two reference steps on
    // ordinary gradients, then the input class's values.
    in_.p.setup(pk, cap, sh(0));
    in_.g.setup(pk, cap, sh(1));
    in_.master.setup(Kind::F32, cap, sh(2));
    for (std::size_t k = 0; k < nslots; ++k) {
      in_.s[k].setup(sk, cap, sh(3 + static_cast<int>(k)));
      if (q8) in_.q[k].setup(Kind::F32, nblk + 2, sh(6 + static_cast<int>(k)));
    }
    const KernelTable& ref = *tables_[0].k;
    if (master_mode) {
      in_.master.fill(b, e, [&](std::size_t) { return ordinary_raw(Kind::F32, rng); });
      in_.p.fill(b, e, [&](std::size_t i) { return raw_of(pk, value_raw(Kind::F32, in_.master.get(i))); });
    } else {
      in_.p.fill(b, e, [&](std::size_t) { return ordinary_raw(pk, rng); });
    }
    for (std::size_t k = 0; k < nslots; ++k) {
      const bool used = needed & (1u << k);
      if (!used && !c.pass_unneeded) continue;
      // A slot the update does not use holds arbitrary valid values; a used one starts at its
      // initial value.
      const double init = slot_init(c.h, static_cast<int>(k));
      if (!q8) {
        in_.s[k].fill(b, e, [&](std::size_t) { return used ? raw_of(sk, init) : ordinary_raw(sk, rng); });
      } else if (e > b) {
        std::vector<float> x(e - b);
        for (float& v : x) v = used ? static_cast<float>(init) : ordinary<float>(rng);
        ref.q8_encode[(uns >> k) & 1u](x.data(), x.size(), in_.s[k].at0() + b,
                                       reinterpret_cast<float*>(in_.q[k].at0()) + b / kQ);
      }
    }
    double state[kMaxRuleState] = {};
    for (std::size_t k = 0; k < c.rule->state.size(); ++k) state[k] = c.rule->state[k].initial;
    TensorRef t = refs(in_, c, needed, nslots);
    const ChunkFn ref_fn = ref.rule[r][d][sk_i][m];
    if (c.step > 1) {
      for (int w = 1; w <= kWarmupSteps; ++w) {
        in_.g.fill(b, e, [&](std::size_t) { return ordinary_raw(pk, rng); });
        t.fresh = w == 1 ? needed : 0;
        t.key = c.key_value() ^ (0x5851F42D4C957F2Dull * static_cast<std::uint64_t>(w));
        fill_step_scalars(t, c.h, w, state);
        ref_fn(c.h, t, b, e, nullptr);
      }
      t.key = c.key_value();
    }
    in_.g.fill(b, e, [&](std::size_t) { return ordinary_raw(pk, rng); });
    if (c.inputs != Inputs::Ordinary) {
      // Extreme: a third of every buffer's elements; tiny: all of them (the slots after step 1
      // only: a step-1 slot holds its initial value).
      const bool all = c.inputs == Inputs::Tiny;
      auto spray = [&](Arr& a, Kind k) {
        a.fill(b, e, [&](std::size_t i) {
          if (all) return tiny_raw(k, rng);
          return rng.below(3) == 0 ? extreme_raw(k, rng) : a.get(i);
        });
      };
      spray(in_.g, pk);
      if (master_mode) spray(in_.master, Kind::F32);
      spray(in_.p, pk);
      if (!all || c.step > 1) {
        for (std::size_t k = 0; k < nslots; ++k) {
          if (!(needed & (1u << k))) continue;
          spray(in_.s[k], sk);  // 8-bit: any byte is a valid code (0x80 / 0: non-finite)
          if (q8)
            in_.q[k].fill(b / kQ, (e + kQ - 1) / kQ, [&](std::size_t i) {
              return all || rng.below(3) == 0 ? bits_of(absmax_value(c.inputs, rng)) : in_.q[k].get(i);
            });
        }
      }
    }
    if (master_mode) {
      if (c.master_consistent) in_.p.fill(b, e, [&](std::size_t i) { return raw_of(pk, value_raw(Kind::F32, in_.master.get(i))); });
      else in_.p.fill(b, e, [&](std::size_t) { return input_raw(pk, c.inputs, rng); });
    }
    t.fresh = c.step == 1 ? needed : 0;
    fill_step_scalars(t, c.h, c.step, state);

    // Every table on its own copy.
    for (std::size_t ti = 0; ti < tables_.size(); ++ti) {
      if (!active_[ti]) continue;
      Work& o = out_[ti];
      copy(o, in_, nslots, q8);
      TensorRef tt = refs(o, c, needed, nslots);
      std::memcpy(tt.scalars, t.scalars, sizeof t.scalars);
      tt.fresh = t.fresh;
      st_[ti] = StepStats();
      const ChunkFn fn = tables_[ti].k->rule[r][d][sk_i][m];
      fn(c.h, tt, b, e, c.stats ? &st_[ti] : nullptr);
      check_untouched(ti, c, needed, nslots);
    }

    for (Pair& pr : pairs_) {
      if (!active_[pr.a] || !active_[pr.b] || pr.mode == Mode::ProbeOnly) continue;
      ++pr.cases;
      const Work &x = out_[pr.a], &y = out_[pr.b];
      compare(pr, c, "param", x.p, y.p, b, e);
      if (master_mode) compare(pr, c, "master", x.master, y.master, b, e);
      for (std::size_t k = 0; k < nslots; ++k) {
        if (!(needed & (1u << k))) continue;
        compare(pr, c, c.rule->slots[k], x.s[k], y.s[k], b, e);
        if (q8) compare(pr, c, (std::string(c.rule->slots[k]) + ".absmax").c_str(), x.q[k], y.q[k], b / kQ, (e + kQ - 1) / kQ);
      }
      if (c.stats) compare_stats(pr, c);
    }
  }

 private:
  TensorRef refs(Work& w, const RuleCase& c, unsigned needed, std::size_t nslots) const {
    TensorRef t;
    t.p = w.p.at0();
    t.g = w.g.at0();
    t.master = reinterpret_cast<float*>(w.master.at0());  // every mode: only master mode may touch it
    for (std::size_t k = 0; k < nslots; ++k) {
      if (!(needed & (1u << k)) && !c.pass_unneeded) continue;
      t.s[k] = w.s[k].at0();
      if (c.state == StateKind::Q8) t.q[k] = reinterpret_cast<float*>(w.q[k].at0());
    }
    t.n = c.tensor_n;
    t.dtype = c.dtype;
    t.state = c.state;
    t.mode = c.mode;
    t.needed = needed;
    t.granule = c.state == StateKind::Q8 ? kQ : 1;
    t.key = c.key_value();
    t.index = c.index_value();
    return t;
  }

  static void copy(Work& o, const Work& in, std::size_t nslots, bool q8) {
    o.p.copy_from(in.p);
    o.g.copy_from(in.g);
    o.master.copy_from(in.master);
    for (std::size_t k = 0; k < nslots; ++k) {
      o.s[k].copy_from(in.s[k]);
      if (q8) o.q[k].copy_from(in.q[k]);
    }
  }

  // The gradient is read only, and so are the slots the update does not use (and the master
  // outside master mode); nothing outside [begin, end) (its blocks, for absmax) is written.
  void check_untouched(std::size_t ti, const RuleCase& c, unsigned needed, std::size_t nslots) {
    const std::size_t b = c.begin, e = c.begin + c.n;
    const Work& o = out_[ti];
    auto same = [&](const std::string& what, const Arr& x, const Arr& ref, std::size_t lo, std::size_t hi) {
      long i = 0;
      if (untouched(x, ref, lo, hi, &i)) return;
      report_other([&] {
        const bool inside = i >= 0 && static_cast<std::size_t>(i) < ref.len;
        return std::string(tables_[ti].name) + " wrote " + what + "[" + std::to_string(i) +
               "] (outside the update or a read-only input)" +
               (inside ? ": " + show_raw(ref.kind, x.get(static_cast<std::size_t>(i))) + ", was " +
                             show_raw(ref.kind, ref.get(static_cast<std::size_t>(i)))
                       : std::string()) +
               "; " + c.describe();
      });
    };
    same("g", o.g, in_.g, 0, 0);
    same("param", o.p, in_.p, b, e);
    if (c.mode == ParamMode::Master) same("master", o.master, in_.master, b, e);
    else same("master", o.master, in_.master, 0, 0);
    for (std::size_t k = 0; k < nslots; ++k) {
      const bool used = needed & (1u << k);
      same(c.rule->slots[k], o.s[k], in_.s[k], used ? b : 0, used ? e : 0);
      if (c.state == StateKind::Q8)
        same(std::string(c.rule->slots[k]) + ".absmax", o.q[k], in_.q[k], used ? b / kQ : 0,
             used ? (e + kQ - 1) / kQ : 0);
    }
  }

  void compare(Pair& pr, const RuleCase& c, const char* what, const Arr& x, const Arr& y, std::size_t lo,
               std::size_t hi) {
    compare_range(pr, x, y, lo, hi, [&](std::size_t i) {
      report(pr, [&] {
        const bool absmax = std::strstr(what, ".absmax") != nullptr;
        const std::size_t elem = absmax ? i * kQ : i;  // the block's first element
        std::string s = c.describe() + "\n    " + what + "[" + std::to_string(i) + "]" +
                        (absmax ? " (block)" : "") + ": " + tables_[pr.a].name + " " + show_raw(x.kind, x.get(i)) +
                        ", " + tables_[pr.b].name + " " + show_raw(y.kind, y.get(i)) + "\n    inputs at element " +
                        std::to_string(elem) + ": g " + show_raw(in_.g.kind, in_.g.get(elem)) + ", param " +
                        show_raw(in_.p.kind, in_.p.get(elem));
        if (c.mode == ParamMode::Master) s += ", master " + show_raw(Kind::F32, in_.master.get(elem));
        const unsigned needed = needed_slots(c.h);
        for (std::size_t k = 0; k < c.rule->slots.size(); ++k) {
          if (!(needed & (1u << k))) continue;
          s += std::string(", ") + c.rule->slots[k] + " " + show_raw(in_.s[k].kind, in_.s[k].get(elem));
          if (c.state == StateKind::Q8) s += " absmax " + show_raw(Kind::F32, in_.q[k].get(elem / kQ));
        }
        return s;
      });
    });
  }

  void compare_stats(Pair& pr, const RuleCase& c) {
    const StepStats &x = st_[pr.a], &y = st_[pr.b];
    ++pr.reductions;
    std::string bad;
    if (pr.mode == Mode::Identical) {
      const double xs[] = {x.grad_sq, x.update_sq, x.lr_sum, x.lr_min, x.lr_max};
      const double ys[] = {y.grad_sq, y.update_sq, y.lr_sum, y.lr_min, y.lr_max};
      bool same = x.count == y.count;
      for (int k = 0; k < 5; ++k) same = same && same_bits(xs[k], ys[k]);
      if (!same) bad = "not bit-identical";
    } else if (c.inputs == Inputs::Ordinary) {
      // Extreme inputs make the sums NaN or infinite, and huge values can overflow a float32
      // partial sum in one lane order and not in another: only ordinary inputs have comparable
      // statistics. Even they can reach Inf and NaN where a 16-bit param overflows (an update
      // beyond 65504) or a centered variance cancels: then the sums must be non-finite alike,
      // and lr_min/lr_max, which depend on where NaN rates fall in the lanes, are compared only
      // without NaN rates.
      const double rtol = stats_rtol(c.dtype), big = c.dtype == DType::F64 ? 1e300 : 1e30;
      // A sum that reaches `big` may or may not overflow a partial sum, depending on the lane
      // order: then both must be that large (or infinite).
      auto sum_ok = [&](double a, double b) {
        if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
        if (std::fabs(a) >= big || std::fabs(b) >= big) return std::fabs(a) >= big && std::fabs(b) >= big;
        return close(a, b, rtol);
      };
      const bool nan_rate = std::isnan(y.lr_sum);
      if (x.count != y.count) bad = "count";
      else if (!sum_ok(x.grad_sq, y.grad_sq)) bad = "grad_sq";
      else if (!sum_ok(x.update_sq, y.update_sq)) bad = "update_sq";
      else if (!sum_ok(x.lr_sum, y.lr_sum)) bad = "lr_sum";
      else if (!nan_rate && !same_bits(x.lr_min, y.lr_min)) bad = "lr_min";  // elementwise values: exact
      else if (!nan_rate && !same_bits(x.lr_max, y.lr_max)) bad = "lr_max";
    }
    if (bad.empty()) return;
    auto stats = [](const char* name, const StepStats& s) {
      return std::string(name) + " grad_sq " + show_double(s.grad_sq) + " update_sq " + show_double(s.update_sq) +
             " lr_sum " + show_double(s.lr_sum) + " lr_min " + show_double(s.lr_min) + " lr_max " +
             show_double(s.lr_max) + " count " + std::to_string(s.count);
    };
    report(pr, [&] {
      return c.describe() + "\n    statistics differ (" + bad + "):\n    " + stats(tables_[pr.a].name, x) + "\n    " +
             stats(tables_[pr.b].name, y);
    });
  }

  std::vector<Table>& tables_;
  std::vector<Pair>& pairs_;
  const std::vector<bool>& active_;
  Work in_;
  std::vector<Work> out_;
  std::vector<StepStats> st_;
};

// Every hyperparameter vector of a rule: the base values, then one field changed at a time.
std::vector<std::vector<double>> hyper_variants(const RuleInfo& r) {
  std::vector<const std::vector<double>*> vals;
  for (const char* f : r.fields) {
    bool known = false;
    vals.push_back(&values_of(f, &known));
    if (!known)
      std::printf("note: rule %s: no test values for hyperparameter '%s' in kernel_diff.cpp (field_values); using "
                  "0.9 and 0\n",
                  r.name, f);
  }
  std::vector<double> base;
  for (const auto* v : vals) base.push_back(v->front());
  std::vector<std::vector<double>> out = {base};
  if (g_opt.quick) return out;
  for (std::size_t f = 0; f < vals.size(); ++f)
    for (std::size_t j = 1; j < vals[f]->size(); ++j) {
      auto v = base;
      v[f] = (*vals[f])[j];
      out.push_back(v);
    }
  return out;
}

// Every subset of a mask.
std::vector<unsigned> subsets(unsigned mask) {
  std::vector<unsigned> out;
  for (unsigned m = mask;; m = (m - 1) & mask) {
    out.push_back(m);
    if (m == 0) break;
  }
  std::reverse(out.begin(), out.end());
  return out;
}

// --------------------------------------------------------------------------------- coverage
// What the rule cases of one storage combination reached (over every rule).
struct Coverage {
  long cases = 0, elements = 0;
  std::set<std::string> rules;
  std::set<std::pair<std::size_t, int>> size_inputs;  // (size, input class)
  std::set<std::size_t> begins, shifts;
  std::set<std::int64_t> steps;
  std::set<std::pair<int, int>> key_index;  // stochastic
  long master_consistent = 0, master_other = 0, past_range = 0, unneeded_passed = 0, stats = 0;
  void add(const RuleCase& c) {
    ++cases;
    elements += static_cast<long>(c.n);
    rules.insert(c.rule->name);
    size_inputs.insert({c.n, static_cast<int>(c.inputs)});
    begins.insert(c.begin);
    shifts.insert(c.shift);
    steps.insert(c.step);
    if (c.mode == ParamMode::Stochastic) key_index.insert({c.key, c.index_base});
    if (c.mode == ParamMode::Master) (c.master_consistent ? master_consistent : master_other) += 1;
    past_range += c.tensor_n > c.begin + c.n;
    unneeded_passed += c.pass_unneeded;
    stats += c.stats;
  }
};
using CoverageKey = std::tuple<int, int, int>;  // dtype, state kind, mode

struct RuleSweep {
  std::uint64_t configs = 0;
  long full_cases = 0, sampled_cases = 0;
  std::map<CoverageKey, Coverage> coverage;
};

// The storage combinations of a rule: every non-null entry of the reference table. Every other
// active table must have exactly the same entries.
std::vector<CoverageKey> combos_of(const RuleInfo& rule, const std::vector<Table>& tables,
                                   const std::vector<bool>& active) {
  std::vector<CoverageKey> out;
  const int r = static_cast<int>(rule.id);
  for (int d = 0; d < kNumDTypes; ++d)
    for (int s = 0; s < kNumStateKinds; ++s)
      for (int m = 0; m < kNumParamModes; ++m) {
        const bool have = tables[0].k->rule[r][d][s][m] != nullptr;
        for (std::size_t ti = 1; ti < tables.size(); ++ti)
          if (active[ti] && (tables[ti].k->rule[r][d][s][m] != nullptr) != have)
            report_other([&] {
              return std::string(tables[ti].name) + " and " + tables[0].name + " differ in whether rule " + rule.name +
                     " has a kernel for " + dtype_name(d) + "/" + state_name(s) + "/" + mode_name(m);
            });
        if (have) out.emplace_back(d, s, m);
      }
  return out;
}

// Every rule over every storage combination and every configuration (flags x hyperparameters x
// weight decay x grad scale x step). The combinations float32 and float64 with math state,
// rounded, run every size (4149 in one configuration of four) with ordinary or extreme inputs in
// turn, plus one case with tiny inputs. Every other combination runs one case per configuration:
// its size, input class, start, address shift, statistics, key and index base (stochastic) and
// master consistency (master) are taken in turn from their lists, so every combination meets
// every configuration and every (size, input class) cell.
RuleSweep run_rules(std::vector<Table>& tables, std::vector<Pair>& pairs, const std::vector<bool>& active) {
  RuleRunner runner(tables, pairs, active);
  const auto ns = sizes(), nq = q8_sizes();
  RuleSweep sw;
  for (const RuleInfo& rule : all_rules()) {
    const auto combos = combos_of(rule, tables, active);
    std::vector<std::uint64_t> turn(combos.size(), 0);
    for (const auto& hv : hyper_variants(rule))
      for (unsigned flags : subsets(rule.flags))
        for (double wd : kWeightDecay)
          for (double gs : kGradScale)
            for (std::int64_t step : kSteps) {
              const std::uint64_t config = ++sw.configs;
              RuleCase c{};
              c.rule = &rule;
              c.h.rule = rule.id;
              c.h.common.lr = kLr;
              c.h.common.weight_decay = wd;
              c.h.common.flags = flags;
              c.h.grad_scale = gs;
              set_params(c.h, hv.data(), hv.size());
              c.step = step;
              for (std::size_t ci = 0; ci < combos.size(); ++ci) {
                const auto [d, s, m] = combos[ci];
                c.dtype = static_cast<DType>(d);
                c.state = static_cast<StateKind>(s);
                c.mode = static_cast<ParamMode>(m);
                Coverage& cov = sw.coverage[combos[ci]];
                const bool full = (c.dtype == DType::F32 || c.dtype == DType::F64) && c.state == StateKind::Math &&
                                  c.mode == ParamMode::Round;
                if (full) {
                  for (std::size_t si = 0; si < ns.size(); ++si) {
                    // The size past the statistics flush (most of the elements) in one
                    // configuration of four.
                    if (ns[si] > kBig && config % 4 != 0) continue;
                    // Ordinary or extreme inputs, statistics on or off, alternating with the
                    // size and the configuration: each configuration and each size meets both
                    // input classes, and each class both statistics settings.
                    const std::uint64_t t = si + (ns[si] > kBig ? config / 4 : config);
                    const int ii = static_cast<int>(t % 2);
                    c.inputs = static_cast<Inputs>(ii);
                    c.n = ns[si];
                    c.begin = (si * 7 + config) % 16;  // every offset 0..15 meets every size
                    c.tensor_n = c.begin + c.n;
                    c.shift = 0;
                    c.stats = (t / 2) % 2 == 0;
                    c.pass_unneeded = (si + config) % 3 == 0;
                    c.seed = (config << 20) ^ (si << 4) ^ static_cast<std::uint64_t>(ii) ^ (std::uint64_t(d) << 16);
                    runner.run(c);
                    cov.add(c);
                    ++sw.full_cases;
                  }
                }
                // The sampled case (for the full combinations: tiny inputs at one size).
                const std::uint64_t j = turn[ci]++;
                const bool q8 = c.state == StateKind::Q8;
                const auto& S = q8 ? nq : ns;
                const std::uint64_t cells = full ? S.size() : S.size() * kNumInputs, round = j / cells;
                std::size_t si = static_cast<std::size_t>(j % cells % S.size());
                // Every other time its turn comes, the size past the statistics flush gives way to
                // one of the other sizes (it has most of the elements).
                if (S[si] > kBig && round % 2 == 1) si = (si + 1 + round / 2) % S.size();
                if (S[si] > kBig && round % 2 == 1) si = (si + 1) % S.size();
                c.inputs = full ? Inputs::Tiny : static_cast<Inputs>(j % cells / S.size());
                c.n = S[si];
                if (q8) {
                  c.begin = kQ * ((j + round) % 3);
                  c.shift = (j * 5 + round) % 16;
                  // A range that ends on a block boundary before the tensor's end, half the time.
                  c.tensor_n = c.begin + c.n + (c.n % kQ == 0 && round % 2 == 1 ? 100 : 0);
                } else {
                  c.begin = (si * 7 + round * 3 + j) % 16;
                  c.shift = 0;
                  c.tensor_n = c.begin + c.n;
                }
                c.stats = (j + round) % 2 == 0;
                c.pass_unneeded = (j + round) % 3 == 0;
                c.master_consistent = (j / 2 + round) % 2 == 0;
                c.key = static_cast<int>((j + round) % kNumKeys);
                c.index_base = static_cast<int>((j / kNumKeys + round) % kNumIndexBases);
                c.seed = (config << 20) ^ (0xABCDull << 32) ^ (std::uint64_t(ci) << 8) ^ j;
                runner.run(c);
                cov.add(c);
                ++sw.sampled_cases;
              }
            }
  }
  return sw;
}

// --------------------------------------------------------------------------- probe and sumsq
// The bandwidth probe of every (dtype, state kind), with and without a master copy (float32 and
// float64 params ignore it: it must stay untouched), every combination of present slots, every
// size, ordinary and extreme inputs, lr 0 and 0.5. 8-bit ranges start on a block boundary (the
// probe adds to a block's absmax at its first element) at unaligned addresses.
long run_probes(std::vector<Table>& tables, std::vector<Pair>& pairs, const std::vector<bool>& active) {
  const auto ns = sizes(), nq = q8_sizes();
  Work in;
  std::vector<Work> out(tables.size());
  std::uint64_t seed = 1;
  long cases = 0;
  const KernelTable& ref = *tables[0].k;
  for (int d = 0; d < kNumDTypes; ++d)
    for (int s = 0; s < kNumStateKinds; ++s) {
      const bool have = ref.probe[d][s] != nullptr;
      for (std::size_t ti = 1; ti < tables.size(); ++ti)
        if (active[ti] && (tables[ti].k->probe[d][s] != nullptr) != have)
          report_other([&] {
            return std::string(tables[ti].name) + " and " + tables[0].name + " differ in whether the probe of " +
                   dtype_name(d) + "/" + state_name(s) + " exists";
          });
      if (!have) continue;
      const Kind pk = param_kind(static_cast<DType>(d)), sk = slot_kind(static_cast<DType>(d), static_cast<StateKind>(s));
      const bool q8 = s == static_cast<int>(StateKind::Q8), half = pk == Kind::F16 || pk == Kind::BF16;
      const auto& S = q8 ? nq : ns;
      for (int with_master = 0; with_master < 2; ++with_master)
        for (std::size_t si = 0; si < S.size(); ++si)
          for (Inputs inputs : {Inputs::Ordinary, Inputs::Extreme})
            for (unsigned mask = 0; mask < (1u << kMaxSlots); ++mask)
              for (double lr : {0.0, 0.5}) {
                const std::size_t n = S[si];
                const std::size_t b = q8 ? kQ * ((si + mask) % 3) : (si * 5 + mask) % 16, e = b + n, cap = e + kGuard;
                const std::size_t shift = q8 ? (si * 3 + mask + static_cast<std::size_t>(with_master)) % 16 : 0;
                const std::size_t nblk = (e + kQ - 1) / kQ;
                Rng rng{++seed * 0x51ed27ULL};
                in.p.setup(pk, cap, shift);
                in.g.setup(pk, cap, (shift + 3) % 16);
                in.master.setup(Kind::F32, cap, (shift + 7) % 16);
                in.p.fill(b, e, [&](std::size_t) { return input_raw(pk, inputs, rng); });
                in.g.fill(b, e, [&](std::size_t) { return input_raw(pk, inputs, rng); });
                in.master.fill(b, e, [&](std::size_t) { return input_raw(Kind::F32, inputs, rng); });
                for (int k = 0; k < kMaxSlots; ++k) {
                  in.s[k].setup(sk, cap, (shift + 5 * static_cast<std::size_t>(k) + 1) % 16);
                  in.s[k].fill(b, e, [&](std::size_t) { return input_raw(sk, inputs, rng); });
                  if (q8) {
                    in.q[k].setup(Kind::F32, nblk + 2, (shift + 2 * static_cast<std::size_t>(k)) % 16);
                    in.q[k].fill(b / kQ, nblk, [&](std::size_t) { return bits_of(absmax_value(inputs, rng)); });
                  }
                }
                Hyper h;
                h.common.lr = lr;
                for (std::size_t ti = 0; ti < tables.size(); ++ti) {
                  if (!active[ti]) continue;
                  Work& o = out[ti];
                  o.p.copy_from(in.p);
                  o.g.copy_from(in.g);
                  o.master.copy_from(in.master);
                  TensorRef t;
                  t.dtype = static_cast<DType>(d);
                  t.state = static_cast<StateKind>(s);
                  t.n = e;
                  t.granule = q8 ? kQ : 1;
                  t.p = o.p.at0();
                  t.g = o.g.at0();
                  t.master = with_master ? reinterpret_cast<float*>(o.master.at0()) : nullptr;
                  for (int k = 0; k < kMaxSlots; ++k) {
                    o.s[k].copy_from(in.s[k]);
                    if (q8) o.q[k].copy_from(in.q[k]);
                    if (!(mask & (1u << k))) continue;
                    t.s[k] = o.s[k].at0();
                    if (q8) t.q[k] = reinterpret_cast<float*>(o.q[k].at0());
                  }
                  tables[ti].k->probe[d][s](h, t, b, e, nullptr);
                  // Untouched: g; the master of a float32/float64 param (or when not passed);
                  // absent slots; everything outside the range.
                  char desc[200];
                  std::snprintf(desc, sizeof desc, "probe %s/%s%s, n=%zu begin=%zu shift=%zu, slots 0x%x, lr=%g, %s inputs",
                                dtype_name(d), state_name(s), with_master ? " with master" : "", n, b, shift, mask, lr,
                                inputs_name(inputs));
                  auto same = [&](const char* what, const Arr& x, const Arr& y, std::size_t lo, std::size_t hi) {
                    long i = 0;
                    if (!untouched(x, y, lo, hi, &i))
                      report_other([&] {
                        return std::string(tables[ti].name) + " wrote " + what + "[" + std::to_string(i) +
                               "] (outside the range or a read-only input): " + desc;
                      });
                  };
                  same("g", o.g, in.g, 0, 0);
                  same("param", o.p, in.p, b, e);
                  same("master", o.master, in.master, with_master && half ? b : 0, with_master && half ? e : 0);
                  for (int k = 0; k < kMaxSlots; ++k) {
                    const bool present = mask & (1u << k);
                    same("slot", o.s[k], in.s[k], present ? b : 0, present ? e : 0);
                    if (q8) same("absmax", o.q[k], in.q[k], present ? b / kQ : 0, present ? nblk : 0);
                  }
                }
                ++cases;
                for (Pair& pr : pairs) {
                  if (!active[pr.a] || !active[pr.b]) continue;
                  ++pr.probes;
                  const Work &x = out[pr.a], &y = out[pr.b];
                  auto cmp = [&](const char* what, const Arr& u, const Arr& v, std::size_t lo, std::size_t hi) {
                    compare_range(pr, u, v, lo, hi, [&](std::size_t i) {
                      report(pr, [&] {
                        char buf[300];
                        std::snprintf(buf, sizeof buf,
                                      "probe %s/%s%s, n=%zu begin=%zu shift=%zu, slots 0x%x, lr=%g, %s inputs: %s[%zu]: ",
                                      dtype_name(d), state_name(s), with_master ? " with master" : "", n, b, shift, mask,
                                      lr, inputs_name(inputs), what, i);
                        return std::string(buf) + tables[pr.a].name + " " + show_raw(u.kind, u.get(i)) + ", " +
                               tables[pr.b].name + " " + show_raw(v.kind, v.get(i));
                      });
                    });
                  };
                  cmp("param", x.p, y.p, b, e);
                  if (with_master && half) cmp("master", x.master, y.master, b, e);
                  for (int k = 0; k < kMaxSlots; ++k) {
                    if (!(mask & (1u << k))) continue;
                    cmp("slot", x.s[k], y.s[k], b, e);
                    if (q8) cmp("absmax", x.q[k], y.q[k], b / kQ, nblk);
                  }
                }
              }
    }
  return cases;
}

// sumsq of every gradient dtype: every size, ordinary, extreme and tiny inputs, every start.
long run_sumsq(std::vector<Table>& tables, std::vector<Pair>& pairs, const std::vector<bool>& active) {
  const auto ns = sizes();
  Arr in, out;
  long cases = 0;
  std::uint64_t seed = 7;
  for (int d = 0; d < kNumDTypes; ++d) {
    const Kind pk = param_kind(static_cast<DType>(d));
    for (std::size_t si = 0; si < ns.size(); ++si)
      for (int ii = 0; ii < kNumInputs; ++ii)
        for (std::size_t rep = 0; rep < 2; ++rep) {
          const Inputs inputs = static_cast<Inputs>(ii);
          const std::size_t n = ns[si], b = (si * 5 + static_cast<std::size_t>(ii) * 3 + rep * 7 + static_cast<std::size_t>(d)) % 16,
                            e = b + n;
          Rng rng{++seed * 0x2545F4914F6CDD1Dull};
          in.setup(pk, e + kGuard, rep);
          in.fill(b, e, [&](std::size_t) { return input_raw(pk, inputs, rng); });
          double sum[8], bad[8];
          for (std::size_t ti = 0; ti < tables.size(); ++ti) {
            if (!active[ti]) continue;
            out.copy_from(in);
            sum[ti] = 0.25;  // sumsq adds to what is there
            bad[ti] = 0;
            if (tables[ti].k->sumsq[d] == nullptr) {
              report_other([&] { return std::string(tables[ti].name) + " has no sumsq for " + dtype_name(d); });
              continue;
            }
            tables[ti].k->sumsq[d](out.at0(), b, e, &sum[ti], &bad[ti]);
            long i = 0;
            if (!untouched(out, in, 0, 0, &i))
              report_other([&] { return std::string(tables[ti].name) + " sumsq wrote its gradient"; });
          }
          ++cases;
          char desc[160];
          std::snprintf(desc, sizeof desc, "sumsq %s, n=%zu begin=%zu, %s inputs", kind_name(pk), n, b, inputs_name(inputs));
          for (Pair& pr : pairs) {
            if (!active[pr.a] || !active[pr.b]) continue;
            // The same width and operations give the same bits; otherwise the order of the
            // additions differs (relative tolerance), and a NaN/Inf must show in both.
            ++pr.reductions;
            const bool ok = pr.mode == Mode::Identical
                                ? same_bits(sum[pr.a], sum[pr.b]) && same_bits(bad[pr.a], bad[pr.b])
                                : close(sum[pr.a], sum[pr.b], kSumsqRtol) && std::isnan(bad[pr.a]) == std::isnan(bad[pr.b]);
            if (!ok)
              report(pr, [&] {
                return std::string(desc) + ": " + tables[pr.a].name + " " + show_double(sum[pr.a]) + " nonfinite " +
                       show_double(bad[pr.a]) + ", " + tables[pr.b].name + " " + show_double(sum[pr.b]) + " nonfinite " +
                       show_double(bad[pr.b]);
              });
          }
        }
  }
  return cases;
}

// ------------------------------------------------------------------------------ 8-bit codec
// q8_encode and q8_decode, signed and unsigned, over whole arrays with partial last blocks and
// unaligned addresses. Encoder inputs: ordinary, extreme, tiny, and "blocks", where each block
// is one regime: all zeros, subnormals and zeros (absmax below kQMax / FLT_MAX, so kQMax /
// absmax is infinite), only NaN and Inf (absmax 0), values near FLT_MAX, a single nonzero,
// ordinary, and exact code values and midpoints between them (ties). Decoder inputs: every code
// byte with absmax 0, subnormal, ordinary, huge and FLT_MAX.
enum class CodecInputs { Ordinary, Extreme, Tiny, Blocks };
constexpr int kNumCodecInputs = 4;
const char* codec_inputs_name(int c) {
  static const char* const n[] = {"ordinary", "extreme", "tiny", "blocks"};
  return n[c];
}

void codec_values(CodecInputs c, Rng& r, float* x, std::size_t n) {
  switch (c) {
    case CodecInputs::Ordinary:
    case CodecInputs::Extreme:
    case CodecInputs::Tiny: {
      const Inputs in = c == CodecInputs::Ordinary ? Inputs::Ordinary : c == CodecInputs::Extreme ? Inputs::Extreme : Inputs::Tiny;
      for (std::size_t i = 0; i < n; ++i) x[i] = from_bits<float>(static_cast<std::uint32_t>(input_raw(Kind::F32, in, r)));
      return;
    }
    case CodecInputs::Blocks: break;
  }
  for (std::size_t lo = 0; lo < n; lo += kQ) {
    const std::size_t hi = std::min(n, lo + kQ);
    const auto regime = r.below(8);
    const float s = std::ldexp(1.0f, static_cast<int>(r.below(60)) - 30);  // a power of 2
    for (std::size_t i = lo; i < hi; ++i) {
      const float sign = (r.next() & 1) ? -1.0f : 1.0f;
      float v = 0;
      switch (regime) {
        case 0: v = sign * 0.0f; break;
        case 1: v = r.below(3) == 0 ? sign * 0.0f : from_bits<float>(static_cast<std::uint32_t>(tiny_raw(Kind::F32, r))); break;
        case 2: v = r.below(3) == 0 ? default_nan<float>() : sign * std::numeric_limits<float>::infinity(); break;
        case 3: v = sign * std::numeric_limits<float>::max() * static_cast<float>(0.25 + 0.75 * r.uniform()); break;
        case 4: v = i == lo + (hi - lo) / 2 ? sign * s : 0.0f; break;
        case 5: v = ordinary<float>(r); break;
        case 6: v = from_bits<float>(static_cast<std::uint32_t>(input_raw(Kind::F32, Inputs::Extreme, r))); break;
        default: {
          // absmax = 1.875 * s (element lo), so y = |x| / s exactly: code values (E4M3: m/8 * 2^e)
          // and the midpoints between neighbours, also in the subnormal range of both codes.
          const int e = static_cast<int>(r.below(36)) - 33;
          const float m = static_cast<float>(8 + r.below(8)) + (r.below(2) ? 0.5f : 0.0f);
          v = i == lo ? 1.875f * s : sign * s * std::ldexp(m / 8.0f, e);
          if (std::fabs(v) > 1.875f * s) v = sign * 1.875f * s;
          break;
        }
      }
      x[i] = v;
    }
  }
}

long run_codec(std::vector<Table>& tables, std::vector<Pair>& pairs, const std::vector<bool>& active) {
  std::vector<std::size_t> ns = {0, 1, 7, 16, 17, 255, 256, 257, 300, 511, 512, 513, 771, 4149};
  if (g_opt.quick) ns = {0, 7, 256, 300, 771};
  Arr x, codes, absmax, outc[8], outa[8], outx[8];
  long cases = 0;
  std::uint64_t seed = 11;
  for (int sg = 0; sg < 2; ++sg)
    for (std::size_t si = 0; si < ns.size(); ++si)
      for (int ci = 0; ci < kNumCodecInputs; ++ci)
        for (int rep = 0; rep < 2; ++rep) {
          const std::size_t n = ns[si], nblk = (n + kQ - 1) / kQ;
          const std::size_t shift = (si + static_cast<std::size_t>(ci) * 5 + static_cast<std::size_t>(sg) * 3 + rep * 8) % 16;
          Rng rng{++seed * 0x9E3779B97F4A7C15ull};
          const std::string desc = std::string(sg ? "unsigned" : "signed") + ", n=" + std::to_string(n) +
                                   ", shift=" + std::to_string(shift) + ", " + codec_inputs_name(ci) + " inputs";
          // Encode.
          x.setup(Kind::F32, n + kGuard, shift);
          std::vector<float> v(n);
          codec_values(static_cast<CodecInputs>(ci), rng, v.data(), n);
          x.fill(0, n, [&](std::size_t i) { return bits_of(v[i]); });
          codes.setup(Kind::U8, n + kGuard, (shift * 3) % 16);
          absmax.setup(Kind::F32, nblk + 2, (shift + 1) % 16);
          for (std::size_t ti = 0; ti < tables.size(); ++ti) {
            if (!active[ti]) continue;
            outx[ti].copy_from(x);
            outc[ti].copy_from(codes);
            outa[ti].copy_from(absmax);
            tables[ti].k->q8_encode[sg](reinterpret_cast<const float*>(outx[ti].at0()), n, outc[ti].at0(),
                                        reinterpret_cast<float*>(outa[ti].at0()));
            long i = 0;
            if (!untouched(outx[ti], x, 0, 0, &i) || !untouched(outc[ti], codes, 0, n, &i) ||
                !untouched(outa[ti], absmax, 0, nblk, &i))
              report_other([&] { return std::string(tables[ti].name) + " q8_encode wrote outside its output (or its input), " + desc; });
            // The code's own rule, whatever the table: the non-finite code (0x80 signed, 0
            // unsigned) for NaN and +-Inf and for nothing else; an absmax that is finite, >= 0,
            // and the largest finite |x| of its block.
            const std::uint64_t nonfinite = sg ? 0x00u : 0x80u;
            for (std::size_t k = 0; k < n; ++k) {
              if (std::isfinite(v[k]) != (outc[ti].get(k) != nonfinite))
                report_other([&] {
                  return std::string(tables[ti].name) + " q8_encode: x[" + std::to_string(k) + "] = " + show(v[k]) +
                         " has code " + show_raw(Kind::U8, outc[ti].get(k)) + " (the non-finite code is " +
                         show_raw(Kind::U8, nonfinite) + "), " + desc;
                });
            }
            for (std::size_t blk = 0; blk < nblk; ++blk) {
              float m = 0;
              for (std::size_t k = blk * kQ; k < std::min(n, blk * kQ + kQ); ++k)
                if (std::isfinite(v[k])) m = std::max(m, std::fabs(v[k]));
              if (bits_of(m) != outa[ti].get(blk))
                report_other([&] {
                  return std::string(tables[ti].name) + " q8_encode: absmax[" + std::to_string(blk) + "] " +
                         show_raw(Kind::F32, outa[ti].get(blk)) + ", the block's largest finite |x| is " + show(m) +
                         ", " + desc;
                });
            }
          }
          ++cases;
          for (Pair& pr : pairs) {
            if (!active[pr.a] || !active[pr.b]) continue;
            ++pr.codecs;
            auto bad = [&](const char* what, const Arr& u, const Arr& w, std::size_t i) {
              report(pr, [&] {
                const std::size_t elem = std::strcmp(what, "absmax") == 0 ? i * kQ : i;
                return "q8_encode " + desc + ": " + what + "[" + std::to_string(i) + "]: " + tables[pr.a].name + " " +
                       show_raw(u.kind, u.get(i)) + ", " + tables[pr.b].name + " " + show_raw(w.kind, w.get(i)) +
                       "; x[" + std::to_string(elem) + "] = " + (elem < n ? show(v[elem]) : std::string("-"));
              });
            };
            compare_range(pr, outc[pr.a], outc[pr.b], 0, n,
                          [&](std::size_t i) { bad("codes", outc[pr.a], outc[pr.b], i); });
            compare_range(pr, outa[pr.a], outa[pr.b], 0, nblk,
                          [&](std::size_t i) { bad("absmax", outa[pr.a], outa[pr.b], i); });
          }
          // Decode: every code byte, absmax of every kind.
          const std::size_t code0 = rng.below(256);  // every byte in every 256 elements
          codes.fill(0, n, [&](std::size_t i) { return (i * 0x9Du + code0) & 0xffu; });
          absmax.fill(0, nblk, [&](std::size_t) {
            return bits_of(absmax_value(rng.below(2) ? Inputs::Extreme : Inputs::Tiny, rng));
          });
          if (ci == 0) absmax.fill(0, nblk, [&](std::size_t) { return bits_of(absmax_value(Inputs::Ordinary, rng)); });
          x.setup(Kind::F32, n + kGuard, (shift + 9) % 16);
          for (std::size_t ti = 0; ti < tables.size(); ++ti) {
            if (!active[ti]) continue;
            outx[ti].copy_from(x);
            outc[ti].copy_from(codes);
            outa[ti].copy_from(absmax);
            tables[ti].k->q8_decode[sg](outc[ti].at0(), reinterpret_cast<const float*>(outa[ti].at0()), n,
                                        reinterpret_cast<float*>(outx[ti].at0()));
            long i = 0;
            if (!untouched(outx[ti], x, 0, n, &i) || !untouched(outc[ti], codes, 0, 0, &i) ||
                !untouched(outa[ti], absmax, 0, 0, &i))
              report_other([&] { return std::string(tables[ti].name) + " q8_decode wrote outside its output (or its input), " + desc; });
          }
          ++cases;
          for (Pair& pr : pairs) {
            if (!active[pr.a] || !active[pr.b]) continue;
            ++pr.codecs;
            compare_range(pr, outx[pr.a], outx[pr.b], 0, n, [&](std::size_t i) {
              report(pr, [&] {
                return "q8_decode " + desc + ": x[" + std::to_string(i) + "]: " + tables[pr.a].name + " " +
                       show_raw(Kind::F32, outx[pr.a].get(i)) + ", " + tables[pr.b].name + " " +
                       show_raw(Kind::F32, outx[pr.b].get(i)) + "; code " + show_raw(Kind::U8, codes.get(i)) +
                       ", absmax " + show_raw(Kind::F32, absmax.get(i / kQ));
              });
            });
          }
        }
  return cases;
}

int usage() {
  std::fprintf(stderr, "usage: kernel_diff [--quick] [--max-reports N]\n");
  return 2;
}

std::string join_sizes(const std::set<std::size_t>& s) {
  std::string out;
  for (std::size_t v : s) out += (out.empty() ? "" : ",") + std::to_string(v);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) g_opt.quick = true;
    else if (std::strcmp(argv[i], "--max-reports") == 0 && i + 1 < argc) g_opt.max_reports = std::atol(argv[++i]);
    else return usage();
  }
  const auto t0 = std::chrono::steady_clock::now();

  // The references first. A table is only fetched when this CPU can run it: building it runs
  // code compiled with its ISA flags.
  const bool avx2 = isa_supported(Isa::Avx2), avx512 = isa_supported(Isa::Avx512);
  std::vector<Table> tables = {
      {"scalar-fma", &test::kernel_table_scalar_fma()},
      {"scalar", &kernel_table_scalar()},
      {"avx2", avx2 ? &kernel_table_avx2() : nullptr},
      {"avx2-unfused", avx2 ? &test::kernel_table_avx2_unfused() : nullptr},
      {"avx512-simde", avx2 ? &test::kernel_table_avx512_simde() : nullptr},
      {"avx512", avx512 ? &kernel_table_avx512() : nullptr},
  };
  std::vector<bool> active;
  for (const Table& t : tables) active.push_back(t.k != nullptr);
  std::vector<Pair> pairs = {
      {2, 0, Mode::Exact, "avx2 vs scalar-fma"},
      {4, 0, Mode::Exact, "avx512-simde vs scalar-fma"},
      {5, 0, Mode::Exact, "avx512 vs scalar-fma"},
      {4, 5, Mode::Identical, "avx512-simde vs avx512"},
      {1, 3, Mode::Exact, "scalar vs avx2-unfused"},
      {1, 0, Mode::ProbeOnly, "scalar vs scalar-fma (probe, sumsq, codec)"},
  };
  std::printf("kernel_diff: tables:");
  for (std::size_t i = 0; i < tables.size(); ++i) std::printf(" %s%s", tables[i].name, active[i] ? "" : " (skipped)");
  std::printf("\n");
  if (!avx2)
    std::printf("SKIP avx2, avx2-unfused, avx512-simde: this CPU has no AVX2 + FMA (or the OS does not enable the "
                "YMM state), so their kernels would die with SIGILL; they are not run. Only the probe, sumsq and "
                "codec of scalar vs scalar-fma are compared.\n");
  if (!avx512)
    std::printf("SKIP avx512: this CPU has no AVX-512F%s.\n",
                avx2 ? "; the AVX-512 kernels run through avx512-simde" : "");

  long bad = 0;
  if (avx2 && !test::simde_overrides_ok()) ++bad;
  auto lap = [t = std::chrono::steady_clock::now()]() mutable {
    const auto now = std::chrono::steady_clock::now();
    const double s = std::chrono::duration<double>(now - t).count();
    t = now;
    return s;
  };
  // The rule cases need a pair that compares them (without AVX2 there is none: the production
  // scalar table's reference is an AVX2 build).
  bool rule_pairs = false;
  for (const Pair& pr : pairs) rule_pairs |= active[pr.a] && active[pr.b] && pr.mode != Mode::ProbeOnly;
  const RuleSweep sw = rule_pairs ? run_rules(tables, pairs, active) : RuleSweep();
  const double t_rules = lap();
  const long probes = run_probes(tables, pairs, active);
  const double t_probes = lap();
  const long sumsqs = run_sumsq(tables, pairs, active);
  const long codecs = run_codec(tables, pairs, active);
  const double t_rest = lap();

  // What was covered.
  if (!rule_pairs) std::printf("kernel_diff: no table pair compares rule kernels on this CPU: rule cases not run\n");
  else std::printf("kernel_diff: %zu rules, %llu configurations (flags x hyperparameters x weight decay x grad scale x "
              "step)%s; rule cases per storage combination (param dtype/state/mode):\n",
              all_rules().size(), static_cast<unsigned long long>(sw.configs), g_opt.quick ? " (--quick)" : "");
  const std::size_t nsz = sizes().size(), nqz = q8_sizes().size();
  for (const auto& [key, cv] : sw.coverage) {
    const auto [d, s, m] = key;
    const bool q8 = s == static_cast<int>(StateKind::Q8);
    const std::size_t cells = (q8 ? nqz : nsz) * kNumInputs;
    std::printf("  %-4s %-4s %-10s %7ld cases %10ld elements, %zu rules, %zu steps, size x inputs %zu/%zu, starts %zu%s",
                dtype_name(d), state_name(s), mode_name(m), cv.cases, cv.elements, cv.rules.size(), cv.steps.size(),
                std::min(cv.size_inputs.size(), cells), cells, cv.begins.size(),
                q8 ? (" {" + join_sizes(cv.begins) + "}").c_str() : "");
    if (q8) std::printf(", address shifts %zu, ranges ending before the tensor %ld", cv.shifts.size(), cv.past_range);
    if (m == static_cast<int>(ParamMode::Stochastic))
      std::printf(", keys x index bases %zu/%d", cv.key_index.size(), kNumKeys * kNumIndexBases);
    if (m == static_cast<int>(ParamMode::Master))
      std::printf(", master consistent %ld / not %ld", cv.master_consistent, cv.master_other);
    std::printf(", unused slots passed %ld\n", cv.unneeded_passed);
    if (cv.size_inputs.size() < cells) {
      std::printf("  NOT COVERED: %s/%s/%s misses %zu size x input cells\n", dtype_name(d), state_name(s), mode_name(m),
                  cells - cv.size_inputs.size());
      ++bad;
    }
  }
  if (rule_pairs) {
    std::printf("  index bases (stochastic, relative to the range's start):");
    for (int i = 0; i < kNumIndexBases; ++i) std::printf(" %s", index_base_name(i));
    std::printf("\n");
  }
  std::printf("kernel_diff: %zu storage combinations, %ld rule cases (%ld full, %ld sampled, %.1f s); %ld probe cases "
              "(%.1f s); %ld sumsq cases and %ld q8 codec cases (%.1f s)\n",
              sw.coverage.size(), sw.full_cases + sw.sampled_cases, sw.full_cases, sw.sampled_cases, t_rules, probes,
              t_probes, sumsqs, codecs, t_rest);
  for (const Pair& pr : pairs) {
    if (!active[pr.a] || !active[pr.b]) {
      std::printf("  %-44s skipped\n", pr.label.c_str());
      continue;
    }
    std::printf("  %-44s %7ld cases %6ld probes %4ld codecs %10ld elements %6ld reductions: %s", pr.label.c_str(),
                pr.cases, pr.probes, pr.codecs, pr.elements, pr.reductions, pr.mismatches ? "FAIL" : "ok");
    if (pr.mismatches) std::printf(" (%ld mismatches)", pr.mismatches);
    if (pr.nan_bits) std::printf(" (%ld NaN with other sign/payload)", pr.nan_bits);
    std::printf("\n");
    bad += pr.mismatches;
  }
  if (g_other_failures)
    std::printf("  %ld other failures (writes outside a range or to a read-only input, the 8-bit code's rule, table "
                "entries)\n",
                g_other_failures);
  bad += g_other_failures;
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("kernel_diff: %s in %.1f s\n", bad ? "FAILED" : "all comparisons matched", secs);
  return bad ? 1 : 0;
}
