// The kernel table of one ISA. Each isa_*.cpp file defines AO_ISA_NS and includes this file; it
// instantiates every rule of rules.def for every dtype with this ISA's vector types. One driver
// runs every rule: it loads p and g, applies what all rules share (clipping scale, maximize,
// weight decay), calls the rule's element update with the vector type for the body and the
// width-1 Scalar<T> for the tail (so the math exists once) and stores p.
#include <cstddef>
#include <cstring>
#include <type_traits>

#include "adaptopt/kernels.h"

#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif
// The AVX-512 types of vec.h: the real ISA, or (tests/native only, never in _core) SIMDe's
// emulation of its intrinsics on AVX2 hardware. The including file has then included
// <simde/x86/avx512.h> with native aliases, which map __m512 and _mm512_* to simde__m512 and
// simde_mm512_*, so vec.h spells the AVX-512 wrappers once for both.
#if defined(__AVX512F__) || defined(AO_SIMDE_AVX512)
#define AO_AVX512 1
#endif

namespace adaptopt {
namespace AO_ISA_NS {
namespace {

#include "kernels/vec.h"

#if defined(AO_AVX512)
template <class T> struct Wide { using type = std::conditional_t<sizeof(T) == 4, F32x16, F64x8>; };
#elif defined(__AVX2__) && defined(__FMA__)
template <class T> struct Wide { using type = std::conditional_t<sizeof(T) == 4, F32x8, F64x4>; };
#else
template <class T> struct Wide { using type = Scalar<T>; };
#endif

// Calls f(V{}, i) for every vector-width block of [begin, end), then f(Scalar<T>{}, i) for
// each element of the tail.
template <class T, class F>
AO_INLINE void for_each_block(std::size_t begin, std::size_t end, F&& f) {
  using V = typename Wide<T>::type;
  std::size_t i = begin;
  if constexpr (V::kLanes > 1) {
    for (; i + V::kLanes <= end; i += V::kLanes) f(V{}, i);
  }
  for (; i < end; ++i) f(Scalar<T>{}, i);
}

// A trivially copyable struct read from raw doubles (Hyper::params, TensorRef::scalars).
template <class P>
AO_INLINE P view(const double* raw) {
  P p;
  std::memcpy(static_cast<void*>(&p), raw, sizeof p);
  return p;
}

// What every rule shares, in torch's order: the clipping scale, maximize, then weight decay:
// L2 (g += wd * p) or decoupled (p *= 1 - lr * wd, before the update).
template <class T>
struct Shared {
  T scale, wd, decay;
  bool scaled, maximize, l2, decoupled;
  explicit Shared(const Hyper& h)
      : scale(T(h.grad_scale)), wd(T(h.common.weight_decay)), decay(T(1.0 - h.common.lr * h.common.weight_decay)),
        scaled(h.grad_scale != 1.0), maximize(h.common.flags & flag::maximize),
        l2(h.common.weight_decay != 0 && !(h.common.flags & flag::decoupled_weight_decay)),
        decoupled(h.common.weight_decay != 0 && (h.common.flags & flag::decoupled_weight_decay)) {}
  template <class V>
  AO_INLINE V grad(V g, V p) const {
    if (scaled) g = g * V::set(scale);
    if (maximize) g = g * V::set(T(-1));
    if (l2) g = mul_add(V::set(wd), p, g);
    return g;
  }
  template <class V>
  AO_INLINE V param(V p) const {
    return decoupled ? p * V::set(decay) : p;
  }
};

// The state slots of one element block, as the rules see them.
template <class V, class T>
struct Slots {
  T* const* s;
  std::size_t i;
  AO_INLINE V load(int k) const { return V::load(s[k] + i); }
  AO_INLINE void store(int k, V v) const { v.store(s[k] + i); }
};

// The lanes of x added in lane order, in double.
template <class D>
AO_INLINE double sum_lanes(D x) {
  typename D::Elem lanes[D::kLanes];
  x.store(lanes);
  double s = 0;
  for (std::size_t k = 0; k < D::kLanes; ++k) s += lanes[k];
  return s;
}

// Accumulates StepStats over one chunk: vector partial sums in T, moved into double every
// 256 blocks so float32 sums do not lose precision. A no-op unless kStats.
template <class T, bool kStats>
struct StatsAcc {
  template <class V>
  struct Part {
    V gsq = V::set(0), usq = V::set(0), lsum = V::set(0);
    V lmin = V::set(__builtin_inf()), lmax = V::set(-__builtin_inf());
    unsigned n = 0;
  };
  using W = typename Wide<T>::type;
  Part<W> wide;
  Part<Scalar<T>> tail;
  StepStats out;

  template <class V>
  AO_INLINE void add(V g, V update, V lr) {
    if constexpr (kStats) {
      auto& a = pick<V>();
      a.gsq = mul_add(g, g, a.gsq);
      a.usq = mul_add(update, update, a.usq);
      a.lsum = a.lsum + lr;
      a.lmin = min_nan(a.lmin, lr);
      a.lmax = max_nan(a.lmax, lr);
      if (++a.n == 256) flush(a);
    }
  }

  void finish(StepStats* st, std::size_t count) {
    if constexpr (kStats) {
      flush(wide);
      flush(tail);
      out.count = count;
      st->merge(out);
    }
  }

 private:
  template <class V>
  AO_INLINE auto& pick() {
    if constexpr (V::kLanes == 1) return tail;
    else return wide;
  }
  template <class V>
  void flush(Part<V>& a) {
    T lo[V::kLanes], hi[V::kLanes];
    a.lmin.store(lo);
    a.lmax.store(hi);
    for (std::size_t k = 0; k < V::kLanes; ++k) {
      out.lr_min = lo[k] < out.lr_min ? lo[k] : out.lr_min;
      out.lr_max = hi[k] > out.lr_max ? hi[k] : out.lr_max;
    }
    out.grad_sq += sum_lanes(a.gsq);
    out.update_sq += sum_lanes(a.usq);
    out.lr_sum += sum_lanes(a.lsum);
    a = Part<V>();
  }
};

// The one driver: rule R over elements [begin, end) of one tensor of element type T.
template <class R, class T, bool kStats>
void rule_impl(const Hyper& h, const TensorRef& t, std::size_t begin, std::size_t end, StepStats* st) {
  using W = typename Wide<T>::type;
  const typename R::template Ctx<W> k(h.common, view<typename R::Params>(h.params),
                                      view<typename R::Scalars>(t.scalars), t.fresh);
  const Shared<T> shared(h);
  T* __restrict p = static_cast<T*>(t.p);
  const T* __restrict g = static_cast<const T*>(t.g);
  T* const slots[kMaxSlots] = {static_cast<T*>(t.s[0]), static_cast<T*>(t.s[1]), static_cast<T*>(t.s[2])};
  StatsAcc<T, kStats> acc;
  for_each_block<T>(begin, end, [&](auto tag, std::size_t i) {
    using V = decltype(tag);
    const V p0 = V::load(p + i), raw = V::load(g + i);
    Slots<V, T> s{slots, i};
    V lr_eff = V::set(0);
    const V pn = R::update(k, shared.grad(raw, p0), shared.param(p0), s, lr_eff);
    pn.store(p + i);
    if constexpr (kStats) acc.add(raw, pn - p0, lr_eff);
  });
  acc.finish(st, end - begin);
}

// The table's entry for each rule and dtype: the statistics variant only when asked for.
template <class R, class T>
void rule_chunk(const Hyper& h, const TensorRef& t, std::size_t b, std::size_t e, StepStats* st) {
  if (st != nullptr) rule_impl<R, T, true>(h, t, b, e, st);
  else rule_impl<R, T, false>(h, t, b, e, st);
}

// ---------------------------------------------------------------------------------------------
// Sum of squares for gradient clipping, in double, in a fixed order for a given [begin, end):
// four vector accumulators combined as (a0 + a1) + (a2 + a3), lanes summed in order, then the
// tail. 0 * g accumulates NaN exactly when some element is NaN or infinite.
template <class T>
void sumsq_chunk(const void* gv, std::size_t begin, std::size_t end, double* sum, double* nonfinite) {
  const T* g = static_cast<const T*>(gv);
  using D = typename Wide<double>::type;
  constexpr std::size_t L = D::kLanes;
  D acc[4] = {D::set(0), D::set(0), D::set(0), D::set(0)};
  D bad = D::set(0);
  const D zero = D::set(0);
  std::size_t i = begin;
  for (; i + 4 * L <= end; i += 4 * L) {
    for (std::size_t k = 0; k < 4; ++k) {
      const D x = D::load_from(g + i + k * L);
      acc[k] = mul_add(x, x, acc[k]);
      bad = bad + x * zero;
    }
  }
  Scalar<double> s{sum_lanes((acc[0] + acc[1]) + (acc[2] + acc[3]))};
  Scalar<double> z{sum_lanes(bad)};
  for (; i < end; ++i) {
    const auto x = Scalar<double>::load_from(g + i);
    s = mul_add(x, x, s);
    z = z + x * Scalar<double>::set(0);
  }
  *sum += s.v;
  *nonfinite += z.v;
}

// ---------------------------------------------------------------------------------------------
// Bandwidth probe: one pass over p, g and every present state buffer with one add per stream.
// h.common.lr is 0 at run time, so values do not change but nothing can be optimised away.
template <class T>
void probe_chunk(const Hyper& h, const TensorRef& t, std::size_t begin, std::size_t end, StepStats*) {
  T* __restrict p = static_cast<T*>(t.p);
  const T* __restrict g = static_cast<const T*>(t.g);
  T* const s0 = static_cast<T*>(t.s[0]);
  T* const s1 = static_cast<T*>(t.s[1]);
  T* const s2 = static_cast<T*>(t.s[2]);
  const T k = T(h.common.lr);
  for_each_block<T>(begin, end, [&](auto tag, std::size_t i) {
    using V = decltype(tag);
    const V x = V::load(g + i) * V::set(k);
    (V::load(p + i) + x).store(p + i);
    if (s0 != nullptr) (V::load(s0 + i) + x).store(s0 + i);
    if (s1 != nullptr) (V::load(s1 + i) + x).store(s1 + i);
    if (s2 != nullptr) (V::load(s2 + i) + x).store(s2 + i);
  });
}

}  // namespace

const KernelTable& table() {
  static const KernelTable t = [] {
    KernelTable k{};
    k.name = AO_ISA_NAME;
#define AO_RULE(Type)                                                                   \
  k.rule[static_cast<int>(RuleId::Type)][0] = &rule_chunk<rules::Type, float>;          \
  k.rule[static_cast<int>(RuleId::Type)][1] = &rule_chunk<rules::Type, double>;
#include "rules/rules.def"
    k.probe[0] = &probe_chunk<float>;
    k.probe[1] = &probe_chunk<double>;
    k.sumsq[0] = &sumsq_chunk<float>;
    k.sumsq[1] = &sumsq_chunk<double>;
    return k;
  }();
  return t;
}

}  // namespace AO_ISA_NS
}  // namespace adaptopt
