// The kernel table of one ISA. Each isa_*.cpp file defines AO_ISA_NS and includes this file; it
// instantiates every rule of rules.def for every storage combination (param dtype x state kind x
// param mode) with this ISA's vector types. One driver runs every rule: it loads p and g in their
// storage type, applies what all rules share (clipping scale, maximize, weight decay), calls the
// rule's element update with the vector type for the body and the width-1 Scalar<T> for the tail
// (so the math exists once), and stores p; the rule reads and writes its state through an
// accessor of the state kind. 8-bit state is processed a block at a time: the new values wait in
// an L1 buffer until the block's absmax is known, then are encoded: still one pass over memory.
#include <cstddef>
#include <cstdint>
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
#include "kernels/storage.h"

static_assert(kQBlock == kQBlockElements);

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

// ---------------------------------------------------------------------------------------------
// Storage access: the math type of a param dtype, and loads and stores of params and gradients.

template <DType kP> using MathOf = std::conditional_t<kP == DType::F64, double, float>;
template <DType kP> using StoreOf = std::conditional_t<
    kP == DType::F64, double, std::conditional_t<kP == DType::F32, float, std::uint16_t>>;

template <DType kP, class V>
AO_INLINE V load_param(V tag, const StoreOf<kP>* p) {
  if constexpr (kP == DType::F16) return load_f16(tag, p);
  else if constexpr (kP == DType::BF16) return load_bf16(tag, p);
  else return V::load(p);
}
// Round to nearest even into the param's storage (16-bit), or store as is.
template <DType kP, class V>
AO_INLINE void store_param(V x, StoreOf<kP>* p) {
  if constexpr (kP == DType::F16) store_u16(float_to_half<0>(x), p);
  else if constexpr (kP == DType::BF16) store_u16(bf16_rne_bits(x), p);
  else x.store(p);
}

// Per-lane random bits for elements index .. index + lanes - 1 of a tensor (storage.h), all 32
// (kHi16 false) or their high 16. The high word's mix is a scalar unless the vector's low words
// wrap past 2^32 (then lanes differ in it).
template <class V, bool kHi16>
AO_INLINE typename Companion<V>::U lane_random(std::uint64_t key, std::uint64_t index) {
  using U = typename Companion<V>::U;
  const std::uint32_t lo = static_cast<std::uint32_t>(index), hi = static_cast<std::uint32_t>(index >> 32);
  const std::uint32_t khi = static_cast<std::uint32_t>(key >> 32);
  U key_hi;
  if (__builtin_expect(lo <= 0xFFFFFFFFu - (V::kLanes - 1), 1)) {
    key_hi = U::set(khi ^ (hi * 0x27D4EB2Fu));
  } else {
    const U lanes = U::set(lo) + U::iota();
    const U carry = select(ult(lanes, U::set(lo)), U::set(1u), U::set(0u));  // the index crossed 2^32
    key_hi = U::set(khi) ^ ((U::set(hi) + carry) * U::set(0x27D4EB2Fu));
  }
  const U key_lo = U::set(static_cast<std::uint32_t>(key));
  if constexpr (kHi16) return random_bits_hi16(key_lo, key_hi, lo);
  else return random_bits(key_lo, key_hi, lo);
}

template <DType kP, class V>
AO_INLINE void store_param_sr(V x, StoreOf<kP>* p, std::uint64_t key, std::uint64_t index) {
  if constexpr (kP == DType::F16) store_u16(f16_sr_bits(x, lane_random<V, false>(key, index)), p);
  else store_u16(bf16_sr_bits(x, lane_random<V, true>(key, index)), p);
}

// |x| if x is finite, else 0: what a block's absmax is taken over.
template <class V>
AO_INLINE V finite_abs(V x) {
  const V a = abs(x);
  return select(lt(a, V::set(__builtin_inff())), a, V::set(0));
}

// The state slots of one element block, as the rules see them: load(k) and store(k, v) in the
// math type, whatever the storage.
template <class V, class T, StateKind kS, unsigned kUnsigned>
struct Slots;

template <class V, class T, unsigned kUnsigned>
struct Slots<V, T, StateKind::Math, kUnsigned> {
  void* const* s;
  std::size_t i;
  AO_INLINE V load(int k) const { return V::load(static_cast<T*>(s[k]) + i); }
  AO_INLINE void store(int k, V v) const { v.store(static_cast<T*>(s[k]) + i); }
};

template <class V, class T, unsigned kUnsigned>
struct Slots<V, T, StateKind::BF16, kUnsigned> {
  void* const* s;
  std::size_t i;
  AO_INLINE V load(int k) const { return load_bf16(V{}, static_cast<const std::uint16_t*>(s[k]) + i); }
  AO_INLINE void store(int k, V v) const { store_u16(bf16_rne_bits(v), static_cast<std::uint16_t*>(s[k]) + i); }
};

// One 8-bit block in flight: the old scale of each slot (absmax / kQMax), the new values (offset
// j in the block) and their running absmax.
struct QBlock {
  using WF = typename Wide<float>::type;
  float scale[kMaxSlots];
  alignas(64) float tmp[kMaxSlots][kQBlock];
};
// The running absmax of each slot, apart from QBlock: the stores into QBlock::tmp cannot alias it,
// so the compiler keeps it in registers through a block.
struct QMax {
  QBlock::WF wide[kMaxSlots];
  Scalar<float> tail[kMaxSlots];
};

template <class V, class T, unsigned kUnsigned>
struct Slots<V, T, StateKind::Q8, kUnsigned> {
  void* const* s;
  std::size_t i, j;
  QBlock* b;
  QMax* m;
  AO_INLINE V load(int k) const {
    const auto code = load_u8(V{}, static_cast<const std::uint8_t*>(s[k]) + i);
    if ((kUnsigned >> k) & 1u) return q8_decode<false>(code, V::set(b->scale[k]));
    return q8_decode<true>(code, V::set(b->scale[k]));
  }
  AO_INLINE void store(int k, V v) const {
    v.store(b->tmp[k] + j);
    if constexpr (V::kLanes == 1) m->tail[k] = max_nan(m->tail[k], finite_abs(v));
    else m->wide[k] = max_nan(m->wide[k], finite_abs(v));
  }
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

// ---------------------------------------------------------------------------------------------
// The one driver: rule R over elements [begin, end) of one tensor with param storage kP, state
// storage kS and param mode kM (for 8-bit state, begin is a multiple of kQBlock and end is too,
// or the tensor's end).
template <class R, DType kP, StateKind kS, ParamMode kM, bool kStats>
void rule_impl(const Hyper& h, const TensorRef& t, std::size_t begin, std::size_t end, StepStats* st) {
  using T = MathOf<kP>;
  using W = typename Wide<T>::type;
  const typename R::template Ctx<W> k(h.common, view<typename R::Params>(h.params),
                                      view<typename R::Scalars>(t.scalars), t.fresh);
  const Shared<T> shared(h);
  StoreOf<kP>* __restrict p = static_cast<StoreOf<kP>*>(t.p);
  const StoreOf<kP>* __restrict g = static_cast<const StoreOf<kP>*>(t.g);
  float* __restrict master = t.master;
  StatsAcc<T, kStats> acc;
  // One element block [i, i + lanes): load, update, store.
  auto element = [&](auto tag, std::size_t i, const auto& slots) {
    using V = decltype(tag);
    V p0;
    if constexpr (kM == ParamMode::Master) p0 = V::load(master + i);
    else p0 = load_param<kP>(tag, p + i);
    const V raw = load_param<kP>(tag, g + i);
    V lr_eff = V::set(0);
    const V pn = R::update(k, shared.grad(raw, p0), shared.param(p0), slots, lr_eff);
    if constexpr (kM == ParamMode::Master) {
      pn.store(master + i);
      store_param<kP>(pn, p + i);
    } else if constexpr (kM == ParamMode::Stochastic) {
      store_param_sr<kP>(pn, p + i, t.key, t.index + i);
    } else {
      store_param<kP>(pn, p + i);
    }
    if constexpr (kStats) acc.add(raw, pn - p0, lr_eff);
  };
  if constexpr (kS != StateKind::Q8) {
    for_each_block<T>(begin, end, [&](auto tag, std::size_t i) {
      element(tag, i, Slots<decltype(tag), T, kS, R::kUnsignedSlots>{t.s, i});
    });
  } else {
    using WF = QBlock::WF;
    QBlock b;
    for (std::size_t lo = begin; lo < end; lo += kQBlock) {
      const std::size_t hi = lo + kQBlock < end ? lo + kQBlock : end, blk = lo / kQBlock;
      QMax mx;
      for (int s = 0; s < kMaxSlots; ++s) {
        mx.wide[s] = WF::set(0);
        mx.tail[s] = Scalar<float>::set(0);
        b.scale[s] = ((t.needed >> s) & 1u) ? t.q[s][blk] / kQMax : 0.0f;
      }
      for_each_block<T>(lo, hi, [&](auto tag, std::size_t i) {
        element(tag, i, Slots<decltype(tag), T, StateKind::Q8, R::kUnsignedSlots>{t.s, i, i - lo, &b, &mx});
      });
      for (int s = 0; s < kMaxSlots; ++s) {
        if (!((t.needed >> s) & 1u)) continue;
        float lanes[WF::kLanes];
        mx.wide[s].store(lanes);
        float absmax = mx.tail[s].v;
        for (float x : lanes) absmax = x > absmax ? x : absmax;
        const float inv = absmax > 0 ? kQMax / absmax : 0.0f;
        std::uint8_t* codes = static_cast<std::uint8_t*>(t.s[s]);
        const bool is_unsigned = (R::kUnsignedSlots >> s) & 1u;
        auto encode = [&](auto finite_inv) {
          constexpr bool kF = decltype(finite_inv)::value;
          for_each_block<float>(lo, hi, [&](auto tag, std::size_t i) {
            using V = decltype(tag);
            const V x = V::load(b.tmp[s] + (i - lo));
            store_u8(is_unsigned ? q8_encode<false, kF>(x, V::set(inv)) : q8_encode<true, kF>(x, V::set(inv)),
                     codes + i);
          });
        };
        if (inv < __builtin_inff()) encode(std::true_type{});
        else encode(std::false_type{});
        t.q[s][blk] = absmax;
      }
    }
  }
  acc.finish(st, end - begin);
}

// The table's entry for each rule and storage combination: the statistics variant only when
// asked for.
template <class R, DType kP, StateKind kS, ParamMode kM>
void rule_chunk(const Hyper& h, const TensorRef& t, std::size_t b, std::size_t e, StepStats* st) {
  if (st != nullptr) rule_impl<R, kP, kS, kM, true>(h, t, b, e, st);
  else rule_impl<R, kP, kS, kM, false>(h, t, b, e, st);
}

// ---------------------------------------------------------------------------------------------
// Sum of squares for gradient clipping, in double, in a fixed order for a given [begin, end):
// four vector accumulators combined as (a0 + a1) + (a2 + a3), lanes summed in order, then the
// tail. 0 * g accumulates NaN exactly when some element is NaN or infinite. 16-bit gradients are
// widened a block at a time into a float buffer first.
template <class T>
void sumsq_span(const T* g, std::size_t begin, std::size_t end, double* sum, double* nonfinite) {
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

template <DType kP>
void sumsq_chunk(const void* gv, std::size_t begin, std::size_t end, double* sum, double* nonfinite) {
  const StoreOf<kP>* g = static_cast<const StoreOf<kP>*>(gv);
  if constexpr (kP == DType::F32 || kP == DType::F64) {
    sumsq_span(g, begin, end, sum, nonfinite);
  } else {
    alignas(64) float buf[kQBlock];
    for (std::size_t lo = begin; lo < end; lo += kQBlock) {
      const std::size_t hi = lo + kQBlock < end ? lo + kQBlock : end;
      for_each_block<float>(lo, hi, [&](auto tag, std::size_t i) { load_param<kP>(tag, g + i).store(buf + (i - lo)); });
      sumsq_span(buf, 0, hi - lo, sum, nonfinite);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Bandwidth probe: one pass over the streams of a step of this storage combination (p or the
// master and p, g, every present slot in its width, 8-bit codes and their scales), with one add
// per stream; h.common.lr is 0 at run time, so values do not change but nothing can be
// optimised away.
template <DType kP, StateKind kS>
void probe_chunk(const Hyper& h, const TensorRef& t, std::size_t begin, std::size_t end, StepStats*) {
  using T = MathOf<kP>;
  StoreOf<kP>* __restrict p = static_cast<StoreOf<kP>*>(t.p);
  const StoreOf<kP>* __restrict g = static_cast<const StoreOf<kP>*>(t.g);
  const T zero = T(h.common.lr);
  for_each_block<T>(begin, end, [&](auto tag, std::size_t i) {
    using V = decltype(tag);
    const V x = load_param<kP>(tag, g + i) * V::set(zero);
    bool done = false;
    if constexpr (kP == DType::F16 || kP == DType::BF16) {
      if (t.master != nullptr) {
        const V m = V::load(t.master + i) + x;
        m.store(t.master + i);
        store_param<kP>(m, p + i);
        done = true;
      }
    }
    if (!done) store_param<kP>(load_param<kP>(tag, p + i) + x, p + i);
    for (int s = 0; s < kMaxSlots; ++s) {
      if (t.s[s] == nullptr) continue;
      if constexpr (kS == StateKind::Math) {
        T* b = static_cast<T*>(t.s[s]);
        (V::load(b + i) + x).store(b + i);
      } else if constexpr (kS == StateKind::BF16) {
        std::uint16_t* b = static_cast<std::uint16_t*>(t.s[s]);
        store_u16(bf16_rne_bits(load_bf16(tag, b + i) + x), b + i);
      } else {
        std::uint8_t* b = static_cast<std::uint8_t*>(t.s[s]);
        store_u8(load_u8(tag, b + i) | to_uint(V::set(zero)), b + i);
        if (i % kQBlock == 0) t.q[s][i / kQBlock] += zero;
      }
    }
  });
}

// The 8-bit code on its own: whole arrays, block by block.
template <bool kSigned>
void q8_encode_array(const float* x, std::size_t n, std::uint8_t* codes, float* absmax) {
  using WF = typename Wide<float>::type;
  for (std::size_t lo = 0; lo < n; lo += kQBlock) {
    const std::size_t hi = lo + kQBlock < n ? lo + kQBlock : n;
    WF wide = WF::set(0);
    Scalar<float> tail = Scalar<float>::set(0);
    for_each_block<float>(lo, hi, [&](auto tag, std::size_t i) {
      using V = decltype(tag);
      if constexpr (V::kLanes == 1) tail = max_nan(tail, finite_abs(V::load(x + i)));
      else wide = max_nan(wide, finite_abs(V::load(x + i)));
    });
    float lanes[WF::kLanes];
    wide.store(lanes);
    float m = tail.v;
    for (float v : lanes) m = v > m ? v : m;
    const float inv = m > 0 ? kQMax / m : 0.0f;
    auto encode = [&](auto finite_inv) {
      for_each_block<float>(lo, hi, [&](auto tag, std::size_t i) {
        using V = decltype(tag);
        store_u8(q8_encode<kSigned, decltype(finite_inv)::value>(V::load(x + i), V::set(inv)), codes + i);
      });
    };
    if (inv < __builtin_inff()) encode(std::true_type{});
    else encode(std::false_type{});
    absmax[lo / kQBlock] = m;
  }
}

template <bool kSigned>
void q8_decode_array(const std::uint8_t* codes, const float* absmax, std::size_t n, float* x) {
  for (std::size_t lo = 0; lo < n; lo += kQBlock) {
    const std::size_t hi = lo + kQBlock < n ? lo + kQBlock : n;
    const float scale = absmax[lo / kQBlock] / kQMax;
    for_each_block<float>(lo, hi, [&](auto tag, std::size_t i) {
      using V = decltype(tag);
      q8_decode<kSigned, V>(load_u8(tag, codes + i), V::set(scale)).store(x + i);
    });
  }
}

}  // namespace

const KernelTable& table() {
  static const KernelTable t = [] {
    KernelTable k{};
    k.name = AO_ISA_NAME;
    constexpr auto M = StateKind::Math, B = StateKind::BF16, Q = StateKind::Q8;
    constexpr auto R = ParamMode::Round, MW = ParamMode::Master, SR = ParamMode::Stochastic;
    auto at = [&](RuleId r, DType d, StateKind s, ParamMode m) -> ChunkFn& {
      return k.rule[static_cast<int>(r)][static_cast<int>(d)][static_cast<int>(s)][static_cast<int>(m)];
    };
#define AO_STATES(Type, D, Mode)                                    \
  at(RuleId::Type, D, M, Mode) = &rule_chunk<rules::Type, D, M, Mode>; \
  at(RuleId::Type, D, B, Mode) = &rule_chunk<rules::Type, D, B, Mode>; \
  at(RuleId::Type, D, Q, Mode) = &rule_chunk<rules::Type, D, Q, Mode>;
#define AO_RULE(Type)                                                              \
  at(RuleId::Type, DType::F64, M, R) = &rule_chunk<rules::Type, DType::F64, M, R>; \
  AO_STATES(Type, DType::F32, R)                                                   \
  AO_STATES(Type, DType::F16, R)                                                   \
  AO_STATES(Type, DType::F16, MW)                                                  \
  AO_STATES(Type, DType::F16, SR)                                                  \
  AO_STATES(Type, DType::BF16, R)                                                  \
  AO_STATES(Type, DType::BF16, MW)                                                 \
  AO_STATES(Type, DType::BF16, SR)
#include "rules/rules.def"
#undef AO_STATES
    k.probe[static_cast<int>(DType::F64)][static_cast<int>(M)] = &probe_chunk<DType::F64, M>;
#define AO_PROBES(D)                                                    \
  k.probe[static_cast<int>(D)][static_cast<int>(M)] = &probe_chunk<D, M>; \
  k.probe[static_cast<int>(D)][static_cast<int>(B)] = &probe_chunk<D, B>; \
  k.probe[static_cast<int>(D)][static_cast<int>(Q)] = &probe_chunk<D, Q>;
    AO_PROBES(DType::F32)
    AO_PROBES(DType::F16)
    AO_PROBES(DType::BF16)
#undef AO_PROBES
    k.sumsq[static_cast<int>(DType::F32)] = &sumsq_chunk<DType::F32>;
    k.sumsq[static_cast<int>(DType::F64)] = &sumsq_chunk<DType::F64>;
    k.sumsq[static_cast<int>(DType::F16)] = &sumsq_chunk<DType::F16>;
    k.sumsq[static_cast<int>(DType::BF16)] = &sumsq_chunk<DType::BF16>;
    k.q8_encode[0] = &q8_encode_array<true>;
    k.q8_encode[1] = &q8_encode_array<false>;
    k.q8_decode[0] = &q8_decode_array<true>;
    k.q8_decode[1] = &q8_decode_array<false>;
    return k;
  }();
  return t;
}

}  // namespace AO_ISA_NS
}  // namespace adaptopt
