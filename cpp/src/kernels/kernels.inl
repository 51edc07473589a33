// Every update rule, written once as a template over the vector type. Each isa_*.cpp file
// defines AO_ISA_NS and includes this file; the same element function runs the vector body
// and (with the width-1 Scalar<T>) the tail, so the math exists once.
//
// The op order follows torch.optim's single-tensor CPU path (addcmul -> fused multiply-add,
// addcdiv -> x + (v*a)/b, lerp with weight < 0.5 -> a + w*(b-a)).
#include <cstddef>
#include <type_traits>

#include "adaptopt/kernels.h"

#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace adaptopt {
namespace AO_ISA_NS {
namespace {

#include "kernels/vec.h"

#if defined(__AVX512F__)
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

template <class T>
struct Buffers {
  T* __restrict p;
  const T* __restrict g;
  T* __restrict s0;
  T* __restrict s1;
  T* __restrict s2;
  explicit Buffers(const TensorRef& t)
      : p(static_cast<T*>(t.p)), g(static_cast<const T*>(t.g)), s0(static_cast<T*>(t.s[0])),
        s1(static_cast<T*>(t.s[1])), s2(static_cast<T*>(t.s[2])) {}
};

// g = clip_scale * grad, negated if maximize, plus weight_decay * p when L2 decay applies.
template <class T>
struct GradPrep {
  T scale, wd;
  bool scaled, maximize, has_wd;
  GradPrep(const Hyper& h, bool l2)
      : scale(T(h.grad_scale)), wd(T(h.weight_decay)), scaled(h.grad_scale != 1.0),
        maximize(h.flags & kMaximize), has_wd(l2 && h.weight_decay != 0) {}
  template <class V>
  AO_INLINE V operator()(V g, V p) const {
    if (scaled) g = g * V::set(scale);
    if (maximize) g = g * V::set(T(-1));
    if (has_wd) g = mul_add(V::set(wd), p, g);
    return g;
  }
};

// square_avg.mul_(a).addcmul_(g, g, value=1-a)
template <class V>
AO_INLINE V ema_sq(V s, V g, typename V::Elem a, typename V::Elem one_minus_a) {
  return mul_add(V::set(one_minus_a) * g, g, s * V::set(a));
}

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
// RMSprop: s0 = square_avg, s1 = momentum_buffer, s2 = grad_avg
template <class T, bool kStats>
void rmsprop_impl(const Hyper& h, const TensorRef& t, std::size_t begin, std::size_t end, StepStats* st) {
  const Buffers<T> b(t);
  const GradPrep<T> prep(h, true);
  const T alpha = T(h.a), one_m_alpha = T(1.0 - h.a), eps = T(h.eps);
  const T mom = T(h.momentum), lr = T(h.lr), neg_lr = T(-h.lr);
  const bool centered = h.flags & kCentered, nesterov = h.flags & kNesterov;
  const bool in_sqrt = h.flags & kEpsInSqrt, has_mom = h.momentum != 0;
  StatsAcc<T, kStats> acc;
  for_each_block<T>(begin, end, [&](auto tag, std::size_t i) {
    using V = decltype(tag);
    const V p = V::load(b.p + i), raw = V::load(b.g + i);
    const V g = prep(raw, p);
    const V sq = ema_sq(V::load(b.s0 + i), g, alpha, one_m_alpha);
    sq.store(b.s0 + i);
    V avg = sq;
    if (centered) {
      V ga = V::load(b.s2 + i);
      ga = mul_add(V::set(one_m_alpha), g - ga, ga);
      ga.store(b.s2 + i);
      avg = mul_add(ga * V::set(T(-1)), ga, sq);
    }
    const V denom = in_sqrt ? sqrt(avg + V::set(eps)) : sqrt(avg) + V::set(eps);
    V pn;
    if (has_mom) {
      const V u = g / denom;
      const V buf = V::load(b.s1 + i) * V::set(mom) + u;
      buf.store(b.s1 + i);
      const V upd = nesterov ? mul_add(V::set(mom), buf, u) : buf;
      pn = mul_add(V::set(neg_lr), upd, p);
    } else {
      pn = p + (V::set(neg_lr) * g) / denom;
    }
    pn.store(b.p + i);
    if constexpr (kStats) acc.add(raw, pn - p, V::set(lr) / denom);
  });
  acc.finish(st, end - begin);
}

// ---------------------------------------------------------------------------------------------
// Adagrad: s0 = sum; t.c0 = lr / (1 + (step - 1) * lr_decay)
template <class T, bool kStats>
void adagrad_impl(const Hyper& h, const TensorRef& t, std::size_t begin, std::size_t end, StepStats* st) {
  const Buffers<T> b(t);
  const GradPrep<T> prep(h, true);
  const T eps = T(h.eps), clr = T(t.c0), neg_clr = T(-t.c0);
  StatsAcc<T, kStats> acc;
  for_each_block<T>(begin, end, [&](auto tag, std::size_t i) {
    using V = decltype(tag);
    const V p = V::load(b.p + i), raw = V::load(b.g + i);
    const V g = prep(raw, p);
    const V sum = mul_add(g, g, V::load(b.s0 + i));
    sum.store(b.s0 + i);
    const V denom = sqrt(sum) + V::set(eps);
    const V pn = p + (V::set(neg_clr) * g) / denom;
    pn.store(b.p + i);
    if constexpr (kStats) acc.add(raw, pn - p, V::set(clr) / denom);
  });
  acc.finish(st, end - begin);
}

// ---------------------------------------------------------------------------------------------
// Adadelta: s0 = square_avg, s1 = acc_delta
template <class T, bool kStats>
void adadelta_impl(const Hyper& h, const TensorRef& t, std::size_t begin, std::size_t end, StepStats* st) {
  const Buffers<T> b(t);
  const GradPrep<T> prep(h, true);
  const T rho = T(h.a), one_m_rho = T(1.0 - h.a), eps = T(h.eps), lr = T(h.lr), neg_lr = T(-h.lr);
  StatsAcc<T, kStats> acc;
  for_each_block<T>(begin, end, [&](auto tag, std::size_t i) {
    using V = decltype(tag);
    const V p = V::load(b.p + i), raw = V::load(b.g + i);
    const V g = prep(raw, p);
    const V sq = ema_sq(V::load(b.s0 + i), g, rho, one_m_rho);
    sq.store(b.s0 + i);
    const V accd = V::load(b.s1 + i);
    const V ratio = sqrt(accd + V::set(eps)) / sqrt(sq + V::set(eps));
    const V delta = ratio * g;
    ema_sq(accd, delta, rho, one_m_rho).store(b.s1 + i);
    const V pn = mul_add(V::set(neg_lr), delta, p);
    pn.store(b.p + i);
    if constexpr (kStats) acc.add(raw, pn - p, V::set(lr) * ratio);
  });
  acc.finish(st, end - begin);
}

// ---------------------------------------------------------------------------------------------
// Adam: s0 = exp_avg, s1 = exp_avg_sq, s2 = max_exp_avg_sq; t.c0 = lr / bc1, t.c1 = 1/sqrt(bc2)
template <class T, bool kStats>
void adam_impl(const Hyper& h, const TensorRef& t, std::size_t begin, std::size_t end, StepStats* st) {
  const Buffers<T> b(t);
  const bool decoupled = h.flags & kDecoupled, amsgrad = h.flags & kAmsgrad;
  const GradPrep<T> prep(h, !decoupled);
  const T w1 = T(1.0 - h.a), w1c = T(h.a), beta2 = T(h.b);
  const T one_m_beta2 = T(1.0 - h.b), eps = T(h.eps), step = T(t.c0), neg_step = T(-t.c0);
  const T inv_bc2 = T(t.c1), decay = T(1.0 - h.lr * h.weight_decay);
  const bool decay_p = decoupled && h.weight_decay != 0;
  const bool lerp_low = (1.0 - h.a) < 0.5;
  StatsAcc<T, kStats> acc;
  for_each_block<T>(begin, end, [&](auto tag, std::size_t i) {
    using V = decltype(tag);
    const V p0 = V::load(b.p + i), raw = V::load(b.g + i);
    const V g = prep(raw, p0);
    const V p = decay_p ? p0 * V::set(decay) : p0;
    V m = V::load(b.s0 + i);
    // exp_avg.lerp_(g, 1 - beta1)
    m = lerp_low ? mul_add(V::set(w1), g - m, m) : mul_add(V::set(-w1c), g - m, g);
    m.store(b.s0 + i);
    const V v = ema_sq(V::load(b.s1 + i), g, beta2, one_m_beta2);
    v.store(b.s1 + i);
    V vv = v;
    if (amsgrad) {
      vv = max_nan(V::load(b.s2 + i), v);
      vv.store(b.s2 + i);
    }
    const V denom = sqrt(vv) * V::set(inv_bc2) + V::set(eps);
    const V pn = p + (V::set(neg_step) * m) / denom;
    pn.store(b.p + i);
    if constexpr (kStats) acc.add(raw, pn - p0, V::set(step) / denom);
  });
  acc.finish(st, end - begin);
}

// ---------------------------------------------------------------------------------------------
// SGD: s0 = momentum_buffer; t.c0 = 1 on the first step (the buffer starts as a copy of g)
template <class T, bool kStats>
void sgd_impl(const Hyper& h, const TensorRef& t, std::size_t begin, std::size_t end, StepStats* st) {
  const Buffers<T> b(t);
  const GradPrep<T> prep(h, true);
  const T mom = T(h.momentum), one_m_damp = T(1.0 - h.b), lr = T(h.lr), neg_lr = T(-h.lr);
  const bool has_mom = h.momentum != 0, nesterov = h.flags & kNesterov, first = t.c0 != 0;
  StatsAcc<T, kStats> acc;
  for_each_block<T>(begin, end, [&](auto tag, std::size_t i) {
    using V = decltype(tag);
    const V p = V::load(b.p + i), raw = V::load(b.g + i);
    V g = prep(raw, p);
    if (has_mom) {
      // buf.mul_(momentum).add_(g, alpha=1 - dampening)
      const V buf = first ? g : mul_add(V::set(one_m_damp), g, V::load(b.s0 + i) * V::set(mom));
      buf.store(b.s0 + i);
      g = nesterov ? mul_add(V::set(mom), buf, g) : buf;
    }
    const V pn = mul_add(V::set(neg_lr), g, p);
    pn.store(b.p + i);
    if constexpr (kStats) acc.add(raw, pn - p, V::set(lr));
  });
  acc.finish(st, end - begin);
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
// Bandwidth probe: reads p, g and every present state buffer once and writes p and the state
// buffers once, like an update with the same buffers, with one add per stream. h.lr is 0 at
// run time, so values do not change but nothing can be optimised away.
template <class T>
void probe_chunk(const Hyper& h, const TensorRef& t, std::size_t begin, std::size_t end, StepStats*) {
  const Buffers<T> b(t);
  const T k = T(h.lr);
  const bool has0 = b.s0 != nullptr, has1 = b.s1 != nullptr, has2 = b.s2 != nullptr;
  for_each_block<T>(begin, end, [&](auto tag, std::size_t i) {
    using V = decltype(tag);
    const V x = V::load(b.g + i) * V::set(k);
    (V::load(b.p + i) + x).store(b.p + i);
    if (has0) (V::load(b.s0 + i) + x).store(b.s0 + i);
    if (has1) (V::load(b.s1 + i) + x).store(b.s1 + i);
    if (has2) (V::load(b.s2 + i) + x).store(b.s2 + i);
  });
}

// The table's entry for each rule: the statistics variant only when asked for.
#define AO_CHUNK(name)                                                                            \
  template <class T>                                                                              \
  void name##_chunk(const Hyper& h, const TensorRef& t, std::size_t b, std::size_t e, StepStats* st) { \
    if (st != nullptr) name##_impl<T, true>(h, t, b, e, st);                                       \
    else name##_impl<T, false>(h, t, b, e, st);                                                   \
  }
AO_CHUNK(rmsprop)
AO_CHUNK(adagrad)
AO_CHUNK(adadelta)
AO_CHUNK(adam)
AO_CHUNK(sgd)
#undef AO_CHUNK

}  // namespace

const KernelTable& table() {
  static const KernelTable t = {
      AO_ISA_NAME,
      {
          {&rmsprop_chunk<float>, &rmsprop_chunk<double>},
          {&adagrad_chunk<float>, &adagrad_chunk<double>},
          {&adadelta_chunk<float>, &adadelta_chunk<double>},
          {&adam_chunk<float>, &adam_chunk<double>},
          {&probe_chunk<float>, &probe_chunk<double>},
          {&sgd_chunk<float>, &sgd_chunk<double>},
      },
      {&sumsq_chunk<float>, &sumsq_chunk<double>},
  };
  return t;
}

}  // namespace AO_ISA_NS
}  // namespace adaptopt
