// NAdam as torch.optim.NAdam: momentum schedule mu_t = beta1 (1 - 0.5 * 0.96^(t psi)) with
// psi = momentum_decay, the running product of the mu_t kept per parameter (torch's mu_product,
// here in double), plus optax's eps_root.
#pragma once

#include "rules/rule.h"

namespace adaptopt::rules {

struct NAdam : RuleBase {
  static constexpr const char* kName = "nadam";
  struct Params {
    double beta1, beta2, eps, eps_root, momentum_decay;
  };
  static constexpr std::array kFields{Field<Params>{"beta1", &Params::beta1}, Field<Params>{"beta2", &Params::beta2},
                                      Field<Params>{"eps", &Params::eps}, Field<Params>{"eps_root", &Params::eps_root},
                                      Field<Params>{"momentum_decay", &Params::momentum_decay}};
  static constexpr unsigned kFlags = 0;
  static constexpr std::array kSlots{"exp_avg", "exp_avg_sq"};
  static constexpr unsigned kUnsignedSlots = 0b10u;  // never negative: the second moment
  static constexpr std::array kState{StateField{"mu_product", 1.0}};

  static unsigned needed(const Common&, const Params&) { return 3u; }
  static double slot_init(const Params&, int) { return 0.0; }

  struct Scalars {
    double bc2, c_grad, c_avg;  // 1 - beta2^t; the factors of g and of exp_avg in the update
  };
  static Scalars scalars(const Common& c, const Params& p, std::int64_t step, double* state) {
    const double t = static_cast<double>(step);
    const double mu = p.beta1 * (1.0 - 0.5 * std::pow(0.96, t * p.momentum_decay));
    const double mu_next = p.beta1 * (1.0 - 0.5 * std::pow(0.96, (t + 1.0) * p.momentum_decay));
    const double prod = state[0] * mu;
    state[0] = prod;
    return {1.0 - std::pow(p.beta2, t), -c.lr * (1.0 - mu) / (1.0 - prod), (-c.lr * mu_next) / (1.0 - prod * mu_next)};
  }

  template <class W>
  struct Ctx {
    using T = typename W::Elem;
    T w1, w1c, beta2, one_m_beta2, eps, eps_root, bc2, c_grad, c_avg, lr;
    bool low, root;
    Ctx(const Common&, const Params& p, const Scalars& s, unsigned)
        : w1(T(1.0 - p.beta1)), w1c(T(p.beta1)), beta2(T(p.beta2)), one_m_beta2(T(1.0 - p.beta2)), eps(T(p.eps)),
          eps_root(T(p.eps_root)), bc2(T(s.bc2)), c_grad(T(s.c_grad)), c_avg(T(s.c_avg)),
          lr(T(-(s.c_grad + s.c_avg))), low(1.0 - p.beta1 < 0.5), root(p.eps_root != 0) {}
  };

  template <class V, class K, class S>
  static AO_INLINE V update(const K& k, V g, V p, S& s, V& lr_eff) {
    const V m = lerp_ema(s.load(0), g, k.w1, k.w1c, k.low);
    s.store(0, m);
    const V v = ema_sq(s.load(1), g, k.beta2, k.one_m_beta2);
    s.store(1, v);
    const V vh = v / V::set(k.bc2);  // exp_avg_sq.div(bias_correction2)
    const V denom = (k.root ? sqrt(vh + V::set(k.eps_root)) : sqrt(vh)) + V::set(k.eps);
    lr_eff = V::set(k.lr) / denom;
    const V p1 = p + (V::set(k.c_grad) * g) / denom;  // addcdiv_(grad, denom, value=c_grad)
    return p1 + (V::set(k.c_avg) * m) / denom;        // addcdiv_(exp_avg, denom, value=c_avg)
  }
};

}  // namespace adaptopt::rules
