// Adam / AdamW as torch.optim.Adam: eps after the bias correction, amsgrad on the raw second
// moment, plus optax's eps_root (inside the sqrt of the bias-corrected second moment).
#pragma once

#include "rules/rule.h"

namespace adaptopt::rules {

struct Adam : RuleBase {
  static constexpr const char* kName = "adam";
  struct Params {
    double beta1, beta2, eps, eps_root;
  };
  static constexpr std::array kFields{Field<Params>{"beta1", &Params::beta1}, Field<Params>{"beta2", &Params::beta2},
                                      Field<Params>{"eps", &Params::eps}, Field<Params>{"eps_root", &Params::eps_root}};
  static constexpr unsigned kFlags = flag::amsgrad;
  static constexpr std::array kSlots{"exp_avg", "exp_avg_sq", "max_exp_avg_sq"};
  static constexpr unsigned kUnsignedSlots = 0b110u;  // never negative: the second moments

  static unsigned needed(const Common& c, const Params&) { return 3u | ((c.flags & flag::amsgrad) ? 4u : 0u); }
  static double slot_init(const Params&, int) { return 0.0; }

  struct Scalars {
    double step_size, inv_sqrt_bc2, inv_bc2;  // lr / (1 - beta1^t), 1/sqrt(1 - beta2^t), 1/(1 - beta2^t)
  };
  static Scalars scalars(const Common& c, const Params& p, std::int64_t step, double*) {
    const double t = static_cast<double>(step), bc2 = 1.0 - std::pow(p.beta2, t);
    return {c.lr / (1.0 - std::pow(p.beta1, t)), 1.0 / std::sqrt(bc2), 1.0 / bc2};
  }

  template <class W>
  struct Ctx {
    using T = typename W::Elem;
    T w1, w1c, beta2, one_m_beta2, eps, eps_root, step, neg_step, inv_sqrt_bc2, inv_bc2;
    bool low, amsgrad, root;
    Ctx(const Common& c, const Params& p, const Scalars& s, unsigned)
        : w1(T(1.0 - p.beta1)), w1c(T(p.beta1)), beta2(T(p.beta2)), one_m_beta2(T(1.0 - p.beta2)), eps(T(p.eps)),
          eps_root(T(p.eps_root)), step(T(s.step_size)), neg_step(T(-s.step_size)), inv_sqrt_bc2(T(s.inv_sqrt_bc2)),
          inv_bc2(T(s.inv_bc2)), low(1.0 - p.beta1 < 0.5), amsgrad(c.flags & flag::amsgrad), root(p.eps_root != 0) {}
  };

  template <class V, class K, class S>
  static AO_INLINE V update(const K& k, V g, V p, S& s, V& lr_eff) {
    const V m = lerp_ema(s.load(0), g, k.w1, k.w1c, k.low);  // exp_avg.lerp_(g, 1 - beta1)
    s.store(0, m);
    const V v = ema_sq(s.load(1), g, k.beta2, k.one_m_beta2);
    s.store(1, v);
    V vv = v;
    if (k.amsgrad) {
      vv = max_nan(s.load(2), v);
      s.store(2, vv);
    }
    const V denom = k.root ? sqrt(vv * V::set(k.inv_bc2) + V::set(k.eps_root)) + V::set(k.eps)
                           : sqrt(vv) * V::set(k.inv_sqrt_bc2) + V::set(k.eps);
    lr_eff = V::set(k.step) / denom;
    return p + (V::set(k.neg_step) * m) / denom;
  }
};

}  // namespace adaptopt::rules
