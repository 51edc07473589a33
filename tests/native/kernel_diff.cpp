// Native test driver: every kernel table this CPU can run, compared element by element with the
// fused scalar reference (isa_scalar_fma.cpp) over every rule of the registry, both dtypes, every
// combination of the rule's option flags, hyperparameters that take every branch, several step
// numbers, sizes around each vector width and unaligned starts. See README.md.
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
#include <memory>
#include <string>
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
constexpr std::size_t kGuard = 16;     // elements after the range, which must stay untouched

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
constexpr std::size_t kBig = 4096;  // sizes above this are run for one input class per config

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
  std::uint64_t below(std::uint64_t n) { return next() % n; }
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

// A buffer aligned to 64 bytes; the kernels are called from element `begin` on, so a begin that
// is not a multiple of 16 bytes / 64 bytes makes every vector access unaligned.
template <class T>
struct Buf {
  std::unique_ptr<T[], void (*)(void*)> mem{nullptr, std::free};
  std::size_t cap = 0;
  void reserve(std::size_t n) {
    if (n <= cap) return;
    const std::size_t bytes = (n * sizeof(T) + 63) / 64 * 64;
    mem.reset(static_cast<T*>(std::aligned_alloc(64, bytes)));
    if (!mem) {
      std::fprintf(stderr, "kernel_diff: out of memory\n");
      std::exit(2);
    }
    cap = n;
  }
  T* data() const { return mem.get(); }
};

// Input values. "ordinary": finite, moderate, with zeros of both signs, small integers and a
// spread of magnitudes. "extreme": a third of the elements of every buffer replaced by NaN, +-Inf,
// huge, subnormal or tiny values. Every NaN input is the x86 default NaN (the one invalid
// operations produce), so that every NaN inside a computation has the same bits, except where a
// kernel changes them (abs): with two different NaN operands x86 returns the first, and a
// compiler may order the operands of a commutative operation differently in each build.
enum class Inputs { Ordinary = 0, Extreme = 1 };
const char* inputs_name(Inputs c) { return c == Inputs::Ordinary ? "ordinary" : "extreme"; }

template <class T>
T ordinary(Rng& r) {
  const double u = r.uniform();
  if (u < 0.04) return T(0);
  if (u < 0.06) return T(-0.0);
  if (u < 0.14) return T(static_cast<double>(r.below(9)) - 4.0);
  double x = (2.0 * r.uniform() - 1.0) * 3.0;
  if (r.uniform() < 0.2) x *= std::pow(10.0, 8.0 * r.uniform() - 4.0);
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

// Bytes a kernel never writes: a signalling NaN, which no arithmetic produces.
template <class T>
T sentinel() {
  if constexpr (sizeof(T) == 4) return from_bits<T>(0x7fa0beefu);
  else return from_bits<T>(0x7ff4beefbeefbeefULL);
}

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
//   Exact: params and every slot bit for bit, the probe too; statistics and sumsq, whose
//     reduction order follows the vector width, within a tolerance.
//   Identical: everything bit for bit, statistics and sumsq too (same width, same operations).
//   ProbeOnly: the probe and sumsq only, as Exact (the production scalar table and the fused
//     reference differ in every rule's mul_add; the probe has none).
enum class Mode { Exact, Identical, ProbeOnly };

struct Pair {
  int a, b;  // indices into the table list: a is checked against b
  Mode mode;
  std::string label;
  long cases = 0, elements = 0, reductions = 0, mismatches = 0;
  long nan_bits = 0;  // elements NaN in both with a different sign or payload (equal, see same_bits)
};

// The first max_reports mismatches of each pair are printed in full; the rest are counted.
// describe() builds the message only when it is printed.
template <class F>
void report(Pair& pr, F&& describe) {
  ++pr.mismatches;
  if (pr.mismatches <= g_opt.max_reports) std::printf("MISMATCH %s: %s\n", pr.label.c_str(), describe().c_str());
  else if (pr.mismatches == g_opt.max_reports + 1)
    std::printf("(further mismatches of %s counted, not printed)\n", pr.label.c_str());
}

// Tolerances for reductions in a different order (statistics, sumsq): float32 statistics add up
// to 256 vector blocks in float before moving to double; sums of squares are in double.
template <class T>
constexpr double stats_rtol() {
  return sizeof(T) == 4 ? 1e-4 : 1e-12;
}
constexpr double kSumsqRtol = 1e-12;

// ---------------------------------------------------------------------------- one rule case
struct RuleCase {
  const RuleInfo* rule;
  Hyper h;
  std::int64_t step;
  Inputs inputs;
  std::size_t n, begin;
  bool stats;
  std::uint64_t seed;

  std::string describe(int dtype) const {
    std::string s = std::string("rule ") + rule->name + ", " + (dtype == 0 ? "float32" : "float64") +
                    ", flags " + flag_names(h.common.flags) + ", ";
    char buf[128];
    for (std::size_t f = 0; f < rule->fields.size(); ++f) {
      std::snprintf(buf, sizeof buf, "%s=%g ", rule->fields[f], h.params[f]);
      s += buf;
    }
    std::snprintf(buf, sizeof buf, "lr=%g weight_decay=%g grad_scale=%g", h.common.lr, h.common.weight_decay,
                  h.grad_scale);
    s += buf;
    s += ", step " + std::to_string(step) + ", " + inputs_name(inputs) + " inputs, n=" + std::to_string(n) +
         " begin=" + std::to_string(begin) + ", stats " + (stats ? "on" : "off");
    return s;
  }
};

template <class T>
struct Work {
  Buf<T> p, g, s[kMaxSlots];
  void reserve(std::size_t n) {
    p.reserve(n);
    g.reserve(n);
    for (auto& b : s) b.reserve(n);
  }
};

template <class T>
class RuleRunner {
 public:
  RuleRunner(std::vector<Table>& tables, std::vector<Pair>& pairs, const std::vector<bool>& active)
      : tables_(tables), pairs_(pairs), active_(active) {
    out_.resize(tables.size());
    st_.resize(tables.size());
  }

  void run(const RuleCase& c) {
    const int dtype = sizeof(T) == 4 ? 0 : 1;
    const int r = static_cast<int>(c.rule->id);
    const std::size_t cap = c.begin + c.n + kGuard;
    const unsigned needed = needed_slots(c.h);
    const std::size_t nslots = c.rule->slots.size();
    in_.reserve(cap);
    for (auto& o : out_) o.reserve(cap);
    Rng rng{c.seed};

    // Inputs: sentinels around [begin, end), the slots' initial values, then (after step 1) two
    // reference steps on ordinary gradients, then (extreme) special values everywhere.
    const T sent = sentinel<T>();
    std::fill_n(in_.p.data(), cap, sent);
    std::fill_n(in_.g.data(), cap, sent);
    for (std::size_t k = 0; k < nslots; ++k) std::fill_n(in_.s[k].data(), cap, sent);
    const std::size_t b = c.begin, e = c.begin + c.n;
    for (std::size_t i = b; i < e; ++i) in_.p.data()[i] = ordinary<T>(rng);
    for (std::size_t k = 0; k < nslots; ++k)
      if (needed & (1u << k)) std::fill(in_.s[k].data() + b, in_.s[k].data() + e, T(slot_init(c.h, int(k))));
    double state[kMaxRuleState] = {};
    for (std::size_t k = 0; k < c.rule->state.size(); ++k) state[k] = c.rule->state[k].initial;
    TensorRef t = refs(in_, needed, nslots);
    t.dtype = dtype == 0 ? DType::F32 : DType::F64;
    t.n = e;
    if (c.step > 1) {
      for (int w = 1; w <= kWarmupSteps; ++w) {
        for (std::size_t i = b; i < e; ++i) in_.g.data()[i] = ordinary<T>(rng);
        t.fresh = w == 1 ? needed : 0;
        fill_step_scalars(t, c.h, w, state);
        tables_[0].k->rule[r][dtype][0][0](c.h, t, b, e, nullptr);
      }
    }
    for (std::size_t i = b; i < e; ++i) in_.g.data()[i] = ordinary<T>(rng);
    if (c.inputs == Inputs::Extreme) {
      auto sprinkle = [&](T* x) {
        for (std::size_t i = b; i < e; ++i)
          if (rng.below(3) == 0) x[i] = extreme<T>(rng);
      };
      sprinkle(in_.p.data());
      sprinkle(in_.g.data());
      for (std::size_t k = 0; k < nslots; ++k)
        if (needed & (1u << k)) sprinkle(in_.s[k].data());
    }
    t.fresh = c.step == 1 ? needed : 0;
    fill_step_scalars(t, c.h, c.step, state);

    // Every table on its own copy.
    for (std::size_t ti = 0; ti < tables_.size(); ++ti) {
      if (!active_[ti]) continue;
      Work<T>& o = out_[ti];
      std::memcpy(o.p.data(), in_.p.data(), cap * sizeof(T));
      std::memcpy(o.g.data(), in_.g.data(), cap * sizeof(T));
      for (std::size_t k = 0; k < nslots; ++k)
        if (needed & (1u << k)) std::memcpy(o.s[k].data(), in_.s[k].data(), cap * sizeof(T));
      TensorRef tt = t;
      const TensorRef io = refs(o, needed, nslots);
      tt.p = io.p;
      tt.g = io.g;
      std::copy(std::begin(io.s), std::end(io.s), std::begin(tt.s));
      st_[ti] = StepStats();
      tables_[ti].k->rule[r][dtype][0][0](c.h, tt, b, e, c.stats ? &st_[ti] : nullptr);
      check_untouched(ti, c, dtype, cap, needed, nslots);
    }

    for (Pair& pr : pairs_) {
      if (!active_[pr.a] || !active_[pr.b] || pr.mode == Mode::ProbeOnly) continue;
      ++pr.cases;
      compare(pr, c, dtype, "param", out_[pr.a].p.data(), out_[pr.b].p.data());
      for (std::size_t k = 0; k < nslots; ++k)
        if (needed & (1u << k)) compare(pr, c, dtype, c.rule->slots[k], out_[pr.a].s[k].data(), out_[pr.b].s[k].data());
      if (c.stats) compare_stats(pr, c, dtype);
    }
  }

 private:
  static TensorRef refs(Work<T>& w, unsigned needed, std::size_t nslots) {
    TensorRef t;
    t.p = w.p.data();
    t.g = w.g.data();
    for (std::size_t k = 0; k < nslots; ++k) t.s[k] = (needed & (1u << k)) ? w.s[k].data() : nullptr;
    return t;
  }

  // The gradient is read only; nothing outside [begin, end) is written.
  void check_untouched(std::size_t ti, const RuleCase& c, int dtype, std::size_t cap, unsigned needed,
                       std::size_t nslots) {
    auto same = [&](const char* what, const T* x, const T* ref, std::size_t lo, std::size_t hi) {
      if (std::memcmp(x + lo, ref + lo, (hi - lo) * sizeof(T)) == 0) return;
      std::size_t i = lo;
      while (std::memcmp(x + i, ref + i, sizeof(T)) == 0) ++i;
      if (++untouched_failures > g_opt.max_reports) return;
      std::printf("MISMATCH %s wrote %s[%zu] (outside the update or a read-only input): %s, was %s; %s\n",
                  tables_[ti].name, what, i, show(x[i]).c_str(), show(ref[i]).c_str(), c.describe(dtype).c_str());
    };
    const std::size_t b = c.begin, e = c.begin + c.n;
    same("g", out_[ti].g.data(), in_.g.data(), 0, cap);
    same("param", out_[ti].p.data(), in_.p.data(), 0, b);
    same("param", out_[ti].p.data(), in_.p.data(), e, cap);
    for (std::size_t k = 0; k < nslots; ++k) {
      if (!(needed & (1u << k))) continue;
      same(c.rule->slots[k], out_[ti].s[k].data(), in_.s[k].data(), 0, b);
      same(c.rule->slots[k], out_[ti].s[k].data(), in_.s[k].data(), e, cap);
    }
  }

  void compare(Pair& pr, const RuleCase& c, int dtype, const char* what, const T* x, const T* ref) {
    const std::size_t b = c.begin, e = c.begin + c.n;
    pr.elements += static_cast<long>(c.n);
    if (std::memcmp(x + b, ref + b, c.n * sizeof(T)) == 0) return;
    for (std::size_t i = b; i < e; ++i) {
      if (same_bits(x[i], ref[i])) pr.nan_bits += bits_of(x[i]) != bits_of(ref[i]);
      else element_mismatch(pr, c, dtype, what, i, x[i], ref[i]);
    }
  }

  void element_mismatch(Pair& pr, const RuleCase& c, int dtype, const char* what, std::size_t i, T x, T ref) {
    report(pr, [&] {
      std::string s = c.describe(dtype) + "\n    " + what + "[" + std::to_string(i - c.begin) + "]: " +
                      tables_[pr.a].name + " " + show(x) + ", " + tables_[pr.b].name + " " + show(ref) +
                      "\n    inputs: g " + show(in_.g.data()[i]) + ", param " + show(in_.p.data()[i]);
      for (std::size_t k = 0; k < c.rule->slots.size(); ++k)
        if (needed_slots(c.h) & (1u << k)) s += std::string(", ") + c.rule->slots[k] + " " + show(in_.s[k].data()[i]);
      return s;
    });
  }

  void compare_stats(Pair& pr, const RuleCase& c, int dtype) {
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
      // Extreme inputs make the sums NaN or infinite and lr_min/lr_max depend on where NaN
      // rates fall in the lanes: only ordinary inputs have comparable statistics.
      const double rtol = stats_rtol<T>();
      if (x.count != y.count) bad = "count";
      else if (!close(x.grad_sq, y.grad_sq, rtol)) bad = "grad_sq";
      else if (!close(x.update_sq, y.update_sq, rtol)) bad = "update_sq";
      else if (!close(x.lr_sum, y.lr_sum, rtol)) bad = "lr_sum";
      else if (!same_bits(x.lr_min, y.lr_min)) bad = "lr_min";  // elementwise values: exact
      else if (!same_bits(x.lr_max, y.lr_max)) bad = "lr_max";
    }
    if (bad.empty()) return;
    auto stats = [](const char* name, const StepStats& s) {
      return std::string(name) + " grad_sq " + show_double(s.grad_sq) + " update_sq " + show_double(s.update_sq) +
             " lr_sum " + show_double(s.lr_sum) + " lr_min " + show_double(s.lr_min) + " lr_max " +
             show_double(s.lr_max) + " count " + std::to_string(s.count);
    };
    report(pr, [&] {
      return c.describe(dtype) + "\n    statistics differ (" + bad + "):\n    " + stats(tables_[pr.a].name, x) +
             "\n    " + stats(tables_[pr.b].name, y);
    });
  }

  std::vector<Table>& tables_;
  std::vector<Pair>& pairs_;
  const std::vector<bool>& active_;
  Work<T> in_;
  std::vector<Work<T>> out_;
  std::vector<StepStats> st_;

 public:
  long untouched_failures = 0;
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

template <class T>
std::uint64_t run_rules(std::vector<Table>& tables, std::vector<Pair>& pairs, const std::vector<bool>& active,
                        long* untouched) {
  RuleRunner<T> runner(tables, pairs, active);
  const auto ns = sizes();
  std::uint64_t config = 0;
  for (const RuleInfo& rule : all_rules()) {
    for (const auto& hv : hyper_variants(rule))
      for (unsigned flags : subsets(rule.flags))
        for (double wd : kWeightDecay)
          for (double gs : kGradScale)
            for (std::int64_t step : kSteps) {
              ++config;
              RuleCase c{};
              c.rule = &rule;
              c.h.rule = rule.id;
              c.h.common.lr = kLr;
              c.h.common.weight_decay = wd;
              c.h.common.flags = flags;
              c.h.grad_scale = gs;
              set_params(c.h, hv.data(), hv.size());
              c.step = step;
              for (std::size_t si = 0; si < ns.size(); ++si)
                for (Inputs in : {Inputs::Ordinary, Inputs::Extreme}) {
                  const int ci = static_cast<int>(in);
                  if (ns[si] > kBig && (config + ci) % 2 != 0) continue;
                  c.inputs = in;
                  c.n = ns[si];
                  c.begin = (si * 7 + config) % 16;  // every offset 0..15 meets every size
                  c.stats = (si + ci + config) % 2 == 0;
                  c.seed = (config << 20) ^ (si << 4) ^ static_cast<std::uint64_t>(ci) ^ (sizeof(T) << 16);
                  runner.run(c);
                }
            }
  }
  *untouched += runner.untouched_failures;
  return config;
}

// --------------------------------------------------------------------------- probe and sumsq
template <class T>
void run_probe_sumsq(std::vector<Table>& tables, std::vector<Pair>& pairs, const std::vector<bool>& active) {
  const int dtype = sizeof(T) == 4 ? 0 : 1;
  const auto ns = sizes();
  Work<T> in;
  std::vector<Work<T>> out(tables.size());
  std::uint64_t seed = 1;
  for (std::size_t si = 0; si < ns.size(); ++si)
    for (Inputs inputs : {Inputs::Ordinary, Inputs::Extreme})
      for (unsigned mask = 0; mask < (1u << kMaxSlots); ++mask)
        for (double lr : {0.0, 0.5}) {
          const std::size_t n = ns[si], b = (si * 5 + mask) % 16, e = b + n, cap = e + kGuard;
          Rng rng{++seed * 0x51ed27ULL};
          in.reserve(cap);
          auto gen = [&](T* x) {
            for (std::size_t i = 0; i < cap; ++i)
              x[i] = (i < b || i >= e) ? sentinel<T>()
                     : inputs == Inputs::Extreme && rng.below(3) == 0 ? extreme<T>(rng)
                                                                    : ordinary<T>(rng);
          };
          gen(in.p.data());
          gen(in.g.data());
          for (auto& s : in.s) gen(s.data());
          Hyper h;
          h.common.lr = lr;
          double sum[8], bad[8];
          for (std::size_t ti = 0; ti < tables.size(); ++ti) {
            if (!active[ti]) continue;
            Work<T>& o = out[ti];
            o.reserve(cap);
            TensorRef t;
            t.dtype = dtype == 0 ? DType::F32 : DType::F64;
            std::memcpy(o.p.data(), in.p.data(), cap * sizeof(T));
            t.p = o.p.data();
            t.g = in.g.data();
            for (int k = 0; k < kMaxSlots; ++k) {
              std::memcpy(o.s[k].data(), in.s[k].data(), cap * sizeof(T));
              t.s[k] = (mask & (1u << k)) ? o.s[k].data() : nullptr;
            }
            tables[ti].k->probe[dtype][0](h, t, b, e, nullptr);
            sum[ti] = 0.25;  // sumsq adds to what is there
            bad[ti] = 0;
            tables[ti].k->sumsq[dtype](in.g.data(), b, e, &sum[ti], &bad[ti]);
          }
          char desc[160];
          std::snprintf(desc, sizeof desc, "%s, n=%zu begin=%zu, slots 0x%x, lr=%g, %s inputs",
                        dtype == 0 ? "float32" : "float64", n, b, mask, lr, inputs_name(inputs));
          for (Pair& pr : pairs) {
            if (!active[pr.a] || !active[pr.b]) continue;
            ++pr.cases;
            // The probe has no mul_add: bit for bit in every pair, the whole buffers.
            const Work<T>&x = out[pr.a], &y = out[pr.b];
            auto same_buf = [&](const T* u, const T* v) {
              for (std::size_t i = 0; i < cap; ++i)
                if (!same_bits(u[i], v[i])) return false;
              return true;
            };
            bool same = same_buf(x.p.data(), y.p.data());
            for (int k = 0; k < kMaxSlots; ++k) same = same && (!(mask & (1u << k)) || same_buf(x.s[k].data(), y.s[k].data()));
            pr.elements += static_cast<long>(n);
            if (!same) report(pr, [&] { return std::string("probe, ") + desc + ": results differ"; });
            // sumsq: the same width and operations give the same bits; otherwise the order of the
            // additions differs (relative tolerance), and a NaN/Inf must show in both.
            ++pr.reductions;
            const bool ok = pr.mode == Mode::Identical
                                ? same_bits(sum[pr.a], sum[pr.b]) && same_bits(bad[pr.a], bad[pr.b])
                                : close(sum[pr.a], sum[pr.b], kSumsqRtol) &&
                                      std::isnan(bad[pr.a]) == std::isnan(bad[pr.b]);
            if (!ok)
              report(pr, [&] {
                return std::string("sumsq, ") + desc + ": " + tables[pr.a].name + " " + show_double(sum[pr.a]) +
                       " nonfinite " + show_double(bad[pr.a]) + ", " + tables[pr.b].name + " " +
                       show_double(sum[pr.b]) + " nonfinite " + show_double(bad[pr.b]);
              });
          }
        }
}

int usage() {
  std::fprintf(stderr, "usage: kernel_diff [--quick] [--max-reports N]\n");
  return 2;
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
      {1, 0, Mode::ProbeOnly, "scalar vs scalar-fma (probe, sumsq)"},
  };
  std::printf("kernel_diff: tables:");
  for (std::size_t i = 0; i < tables.size(); ++i) std::printf(" %s%s", tables[i].name, active[i] ? "" : " (skipped)");
  std::printf("\n");
  if (!avx2)
    std::printf("SKIP avx2, avx2-unfused, avx512-simde: this CPU has no AVX2 + FMA (or the OS does not enable the "
                "YMM state), so their kernels would die with SIGILL; they are not run. Only the probe and sumsq of "
                "scalar vs scalar-fma are compared.\n");
  if (!avx512)
    std::printf("SKIP avx512: this CPU has no AVX-512F%s.\n",
                avx2 ? "; the AVX-512 kernels run through avx512-simde" : "");

  long bad = 0;
  if (avx2 && !test::simde_overrides_ok()) ++bad;
  long untouched = 0;
  const std::uint64_t configs =
      run_rules<float>(tables, pairs, active, &untouched) + run_rules<double>(tables, pairs, active, &untouched);
  run_probe_sumsq<float>(tables, pairs, active);
  run_probe_sumsq<double>(tables, pairs, active);

  bad += untouched;
  std::printf("kernel_diff: %zu rules x 2 dtypes: %llu configurations (flags x hyperparameters x weight decay x "
              "grad scale x step), each over %zu sizes x 2 input sets%s\n",
              all_rules().size(), static_cast<unsigned long long>(configs), sizes().size(),
              g_opt.quick ? " (--quick)" : "");
  for (const Pair& pr : pairs) {
    if (!active[pr.a] || !active[pr.b]) {
      std::printf("  %-52s skipped\n", pr.label.c_str());
      continue;
    }
    std::printf("  %-52s %8ld cases %11ld elements %7ld reductions: %s", pr.label.c_str(), pr.cases, pr.elements,
                pr.reductions, pr.mismatches ? "FAIL" : "ok");
    if (pr.mismatches) std::printf(" (%ld mismatches)", pr.mismatches);
    if (pr.nan_bits) std::printf(" (%ld NaN with other sign/payload)", pr.nan_bits);
    std::printf("\n");
    bad += pr.mismatches;
  }
  if (untouched) std::printf("  %ld writes outside the updated range or to the gradient\n", untouched);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("kernel_diff: %s in %.1f s\n", bad ? "FAILED" : "all comparisons matched", secs);
  return bad ? 1 : 0;
}
