// RAdam as torch.optim.RAdam: the variance rectification when the approximated SMA length
// rho_t exceeds 5, plain bias-corrected momentum otherwise; eps added to sqrt(exp_avg_sq) before
// the bias correction (torch's form), plus optax's eps_root inside the sqrt of the
// bias-corrected second moment.
#pragma once

#include "rules/rule.h"

namespace adaptopt::rules {

struct RAdam : RuleBase {
  static constexpr const char* kName = "radam";
  struct Params {
    double beta1, beta2, eps, eps_root;
  };
  static constexpr std::array kFields{Field<Params>{"beta1", &Params::beta1}, Field<Params>{"beta2", &Params::beta2},
                                      Field<Params>{"eps", &Params::eps}, Field<Params>{"eps_root", &Params::eps_root}};
  static constexpr unsigned kFlags = 0;
  static constexpr std::array kSlots{"exp_avg", "exp_avg_sq"};
  static constexpr unsigned kUnsignedSlots = 0b10u;  // never negative: the second moment

  static unsigned needed(const Common&, const Params&) { return 3u; }
  static double slot_init(const Params&, int) { return 0.0; }

  struct Scalars {
    double bc1, sqrt_bc2, rect, root_bc2, rectified;  // rectified: 1 when rho_t > 5
  };
  static Scalars scalars(const Common&, const Params& p, std::int64_t step, double*) {
    const double t = static_cast<double>(step);
    const double bc1 = 1.0 - std::pow(p.beta1, t), b2t = std::pow(p.beta2, t), bc2 = 1.0 - b2t;
    const double rho_inf = 2.0 / (1.0 - p.beta2) - 1.0;
    const double rho_t = rho_inf - 2.0 * t * b2t / bc2;
    Scalars s{bc1, std::sqrt(bc2), 0.0, p.eps_root * bc2, rho_t > 5.0 ? 1.0 : 0.0};
    if (rho_t > 5.0)
      s.rect = std::sqrt((rho_t - 4.0) * (rho_t - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t));
    return s;
  }

  template <class W>
  struct Ctx {
    using T = typename W::Elem;
    T w1, w1c, beta2, one_m_beta2, eps, bc1, lr, sqrt_bc2, rect, root_bc2, lr_plain;
    bool low, rectified, root;
    Ctx(const Common& c, const Params& p, const Scalars& s, unsigned)
        : w1(T(1.0 - p.beta1)), w1c(T(p.beta1)), beta2(T(p.beta2)), one_m_beta2(T(1.0 - p.beta2)), eps(T(p.eps)),
          bc1(T(s.bc1)), lr(T(c.lr)), sqrt_bc2(T(s.sqrt_bc2)), rect(T(s.rect)), root_bc2(T(s.root_bc2)),
          lr_plain(T(c.lr / s.bc1)), low(1.0 - p.beta1 < 0.5), rectified(s.rectified != 0), root(p.eps_root != 0) {}
  };

  template <class V, class K, class S>
  static AO_INLINE V update(const K& k, V g, V p, S& s, V& lr_eff) {
    const V m = lerp_ema(s.load(0), g, k.w1, k.w1c, k.low);
    s.store(0, m);
    const V v = ema_sq(s.load(1), g, k.beta2, k.one_m_beta2);
    s.store(1, v);
    V x = (m / V::set(k.bc1)) * V::set(k.lr);  // bias_corrected_exp_avg * lr
    if (k.rectified) {
      const V adaptive = V::set(k.sqrt_bc2) / (sqrt(k.root ? v + V::set(k.root_bc2) : v) + V::set(k.eps));
      x = (x * adaptive) * V::set(k.rect);
      lr_eff = (V::set(k.lr_plain) * adaptive) * V::set(k.rect);
    } else {
      lr_eff = V::set(k.lr_plain);
    }
    return p - x;  // param.add_(x, alpha=-1)
  }
};

}  // namespace adaptopt::rules
