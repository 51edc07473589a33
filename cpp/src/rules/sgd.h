// SGD as torch.optim.SGD: momentum with dampening and Nesterov; a momentum buffer created for
// this step starts as a copy of the gradient, as torch starts a missing buffer.
#pragma once

#include "rules/rule.h"

namespace adaptopt::rules {

struct SGD : RuleBase {
  static constexpr const char* kName = "sgd";
  struct Params {
    double momentum, dampening;
  };
  static constexpr std::array kFields{Field<Params>{"momentum", &Params::momentum},
                                      Field<Params>{"dampening", &Params::dampening}};
  static constexpr unsigned kFlags = flag::nesterov;
  static constexpr std::array kSlots{"momentum_buffer"};
  static constexpr unsigned kUnsignedSlots = 0u;  // never negative: none

  static unsigned needed(const Common&, const Params& p) { return p.momentum != 0 ? 1u : 0u; }
  static double slot_init(const Params&, int) { return 0.0; }

  struct Scalars {};
  static Scalars scalars(const Common&, const Params&, std::int64_t, double*) { return {}; }

  template <class W>
  struct Ctx {
    using T = typename W::Elem;
    T mom, one_m_damp, lr, neg_lr;
    bool has_mom, nesterov, fresh;
    // fresh: bit 0 set when the momentum buffer was created for this step.
    Ctx(const Common& c, const Params& p, const Scalars&, unsigned fresh_slots)
        : mom(T(p.momentum)), one_m_damp(T(1.0 - p.dampening)), lr(T(c.lr)), neg_lr(T(-c.lr)),
          has_mom(p.momentum != 0), nesterov(c.flags & flag::nesterov), fresh(fresh_slots & 1u) {}
  };

  template <class V, class K, class S>
  static AO_INLINE V update(const K& k, V g, V p, S& s, V& lr_eff) {
    lr_eff = V::set(k.lr);
    if (k.has_mom) {
      // buf.mul_(momentum).add_(g, alpha=1 - dampening)
      const V buf = k.fresh ? g : mul_add(V::set(k.one_m_damp), g, s.load(0) * V::set(k.mom));
      s.store(0, buf);
      g = k.nesterov ? mul_add(V::set(k.mom), buf, g) : buf;
    }
    return mul_add(V::set(k.neg_lr), g, p);
  }
};

}  // namespace adaptopt::rules
