// Adagrad as torch.optim.Adagrad: clr = lr / (1 + (t-1) lr_decay), eps outside the sqrt, the sum
// starting at initial_accumulator_value and created at construction, like torch's.
#pragma once

#include "rules/rule.h"

namespace adaptopt::rules {

struct Adagrad : RuleBase {
  static constexpr const char* kName = "adagrad";
  struct Params {
    double lr_decay, eps, initial_accumulator_value;
  };
  static constexpr std::array kFields{Field<Params>{"lr_decay", &Params::lr_decay}, Field<Params>{"eps", &Params::eps},
                                      Field<Params>{"initial_accumulator_value", &Params::initial_accumulator_value}};
  static constexpr unsigned kFlags = 0;
  static constexpr std::array kSlots{"sum"};
  static constexpr unsigned kUnsignedSlots = 0b1u;  // never negative: a sum of squares
  static constexpr bool kEagerState = true;

  static unsigned needed(const Common&, const Params&) { return 1u; }
  static double slot_init(const Params& p, int) { return p.initial_accumulator_value; }

  struct Scalars {
    double clr;
  };
  static Scalars scalars(const Common& c, const Params& p, std::int64_t step, double*) {
    return {c.lr / (1.0 + (static_cast<double>(step) - 1.0) * p.lr_decay)};
  }

  template <class W>
  struct Ctx {
    using T = typename W::Elem;
    T eps, clr, neg_clr;
    Ctx(const Common&, const Params& p, const Scalars& s, unsigned)
        : eps(T(p.eps)), clr(T(s.clr)), neg_clr(T(-s.clr)) {}
  };

  template <class V, class K, class S>
  static AO_INLINE V update(const K& k, V g, V p, S& s, V& lr_eff) {
    const V sum = mul_add(g, g, s.load(0));
    s.store(0, sum);
    const V denom = sqrt(sum) + V::set(k.eps);
    lr_eff = V::set(k.clr) / denom;
    return p + (V::set(k.neg_clr) * g) / denom;
  }
};

}  // namespace adaptopt::rules
