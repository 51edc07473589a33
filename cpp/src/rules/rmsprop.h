// RMSprop as torch.optim.RMSprop (eps outside the sqrt, lr outside the momentum buffer), plus
// eps_in_sqrt (TF/Keras/optax placement), nesterov momentum, optax's initial_scale (the value
// square_avg starts at; TF1 used 1) and bias_correction (optax: square_avg and grad_avg divided
// by 1 - alpha^t). The centered variance is clamped at 0 (torch: NaN where rounding makes it
// negative, e.g. alpha = 0).
//
// The shape every rule follows:
//   kName, Params + kFields   named hyperparameters besides Common (lr, weight_decay, flags)
//   kFlags                    the option flags it accepts besides maximize/decoupled_weight_decay
//   kSlots                    state buffers, torch's names, in slot order
//   kUnsignedSlots            bit k: slot k is never negative (its 8-bit code has no sign)
//   needed(), slot_init()     which slots the options use; the value a new buffer starts at
//   Scalars + scalars()       per-step values computed once per tensor, in double
//   Ctx<W>                    those values in the element type, built once per chunk
//   update<V>()               one vector of elements: g (scaled, maximize and L2 applied) and p
//                             (after decoupled decay) in, new p out; slots through `s`; the
//                             effective per-element learning rate into lr_eff (statistics)
#pragma once

#include "rules/rule.h"

namespace adaptopt::rules {

struct RMSprop : RuleBase {
  static constexpr const char* kName = "rmsprop";
  struct Params {
    double alpha, eps, momentum, initial_scale;
  };
  static constexpr std::array kFields{
      Field<Params>{"alpha", &Params::alpha}, Field<Params>{"eps", &Params::eps},
      Field<Params>{"momentum", &Params::momentum}, Field<Params>{"initial_scale", &Params::initial_scale}};
  static constexpr unsigned kFlags = flag::centered | flag::nesterov | flag::eps_in_sqrt | flag::bias_correction;
  static constexpr std::array kSlots{"square_avg", "momentum_buffer", "grad_avg"};
  static constexpr unsigned kUnsignedSlots = 0b001u;  // never negative: square_avg

  static unsigned needed(const Common& c, const Params& p) {
    return 1u | (p.momentum != 0 ? 2u : 0u) | ((c.flags & flag::centered) ? 4u : 0u);
  }
  static double slot_init(const Params& p, int slot) { return slot == 0 ? p.initial_scale : 0.0; }

  struct Scalars {
    double inv_bc;  // 1 / (1 - alpha^t) with bias_correction
  };
  static Scalars scalars(const Common& c, const Params& p, std::int64_t step, double*) {
    const bool bias = c.flags & flag::bias_correction;
    return {bias ? 1.0 / (1.0 - std::pow(p.alpha, static_cast<double>(step))) : 1.0};
  }

  template <class W>
  struct Ctx {
    using T = typename W::Elem;
    T alpha, one_m_alpha, wc, eps, mom, lr, neg_lr, inv_bc;
    bool low, centered, nesterov, in_sqrt, has_mom, bias;
    Ctx(const Common& c, const Params& p, const Scalars& s, unsigned)
        : alpha(T(p.alpha)), one_m_alpha(T(1.0 - p.alpha)), wc(T(p.alpha)), eps(T(p.eps)), mom(T(p.momentum)),
          lr(T(c.lr)), neg_lr(T(-c.lr)), inv_bc(T(s.inv_bc)), low(1.0 - p.alpha < 0.5),
          centered(c.flags & flag::centered), nesterov(c.flags & flag::nesterov),
          in_sqrt(c.flags & flag::eps_in_sqrt), has_mom(p.momentum != 0), bias(c.flags & flag::bias_correction) {}
  };

  template <class V, class K, class S>
  static AO_INLINE V update(const K& k, V g, V p, S& s, V& lr_eff) {
    const V sq = ema_sq(s.load(0), g, k.alpha, k.one_m_alpha);
    s.store(0, sq);
    V avg = k.bias ? sq * V::set(k.inv_bc) : sq;
    if (k.centered) {
      const V ga = lerp_ema(s.load(2), g, k.one_m_alpha, k.wc, k.low);  // grad_avg.lerp_(g, 1-alpha)
      s.store(2, ga);
      const V gh = k.bias ? ga * V::set(k.inv_bc) : ga;
      // The variance is >= 0 in exact arithmetic but cancels to 0 at alpha = 0 and at the first
      // bias-corrected step: a rounding below 0 must not become NaN (a NaN input still does).
      avg = max_propagate(mul_add(gh * V::set(-1), gh, avg), V::set(0));
    }
    const V denom = k.in_sqrt ? sqrt(avg + V::set(k.eps)) : sqrt(avg) + V::set(k.eps);
    lr_eff = V::set(k.lr) / denom;
    if (k.has_mom) {
      const V u = g / denom;
      const V buf = s.load(1) * V::set(k.mom) + u;
      s.store(1, buf);
      const V upd = k.nesterov ? mul_add(V::set(k.mom), buf, u) : buf;
      return mul_add(V::set(k.neg_lr), upd, p);
    }
    return p + (V::set(k.neg_lr) * g) / denom;
  }
};

}  // namespace adaptopt::rules
