// Adamax as torch.optim.Adamax: the infinity norm exp_inf = max(beta2 exp_inf, |g| + eps)
// (NaN propagates, as torch.maximum), step lr / (1 - beta1^t).
#pragma once

#include "rules/rule.h"

namespace adaptopt::rules {

struct Adamax : RuleBase {
  static constexpr const char* kName = "adamax";
  struct Params {
    double beta1, beta2, eps;
  };
  static constexpr std::array kFields{Field<Params>{"beta1", &Params::beta1}, Field<Params>{"beta2", &Params::beta2},
                                      Field<Params>{"eps", &Params::eps}};
  static constexpr unsigned kFlags = 0;
  static constexpr std::array kSlots{"exp_avg", "exp_inf"};
  static constexpr unsigned kUnsignedSlots = 0b10u;  // never negative: the infinity norm

  static unsigned needed(const Common&, const Params&) { return 3u; }
  static double slot_init(const Params&, int) { return 0.0; }

  struct Scalars {
    double clr;  // lr / (1 - beta1^t)
  };
  static Scalars scalars(const Common& c, const Params& p, std::int64_t step, double*) {
    return {c.lr / (1.0 - std::pow(p.beta1, static_cast<double>(step)))};
  }

  template <class W>
  struct Ctx {
    using T = typename W::Elem;
    T w1, w1c, beta2, eps, clr, neg_clr;
    bool low;
    Ctx(const Common&, const Params& p, const Scalars& s, unsigned)
        : w1(T(1.0 - p.beta1)), w1c(T(p.beta1)), beta2(T(p.beta2)), eps(T(p.eps)), clr(T(s.clr)),
          neg_clr(T(-s.clr)), low(1.0 - p.beta1 < 0.5) {}
  };

  template <class V, class K, class S>
  static AO_INLINE V update(const K& k, V g, V p, S& s, V& lr_eff) {
    const V m = lerp_ema(s.load(0), g, k.w1, k.w1c, k.low);
    s.store(0, m);
    const V u = max_propagate(s.load(1) * V::set(k.beta2), abs(g) + V::set(k.eps));
    s.store(1, u);
    lr_eff = V::set(k.clr) / u;
    return p + (V::set(k.neg_clr) * m) / u;  // addcdiv_(exp_avg, exp_inf, value=-clr)
  }
};

}  // namespace adaptopt::rules
