// Adadelta as torch.optim.Adadelta: eps inside both square roots, acc_delta accumulating the
// update before the lr scale.
#pragma once

#include "rules/rule.h"

namespace adaptopt::rules {

struct Adadelta : RuleBase {
  static constexpr const char* kName = "adadelta";
  struct Params {
    double rho, eps;
  };
  static constexpr std::array kFields{Field<Params>{"rho", &Params::rho}, Field<Params>{"eps", &Params::eps}};
  static constexpr unsigned kFlags = 0;
  static constexpr std::array kSlots{"square_avg", "acc_delta"};
  static constexpr unsigned kUnsignedSlots = 0b11u;  // never negative: both are squares

  static unsigned needed(const Common&, const Params&) { return 3u; }
  static double slot_init(const Params&, int) { return 0.0; }

  struct Scalars {};
  static Scalars scalars(const Common&, const Params&, std::int64_t, double*) { return {}; }

  template <class W>
  struct Ctx {
    using T = typename W::Elem;
    T rho, one_m_rho, eps, lr, neg_lr;
    Ctx(const Common& c, const Params& p, const Scalars&, unsigned)
        : rho(T(p.rho)), one_m_rho(T(1.0 - p.rho)), eps(T(p.eps)), lr(T(c.lr)), neg_lr(T(-c.lr)) {}
  };

  template <class V, class K, class S>
  static AO_INLINE V update(const K& k, V g, V p, S& s, V& lr_eff) {
    const V sq = ema_sq(s.load(0), g, k.rho, k.one_m_rho);
    s.store(0, sq);
    const V acc = s.load(1);
    const V ratio = sqrt(acc + V::set(k.eps)) / sqrt(sq + V::set(k.eps));
    const V delta = ratio * g;
    s.store(1, ema_sq(acc, delta, k.rho, k.one_m_rho));
    lr_eff = V::set(k.lr) * ratio;
    return mul_add(V::set(k.neg_lr), delta, p);
  }
};

}  // namespace adaptopt::rules
