// What every update rule shares: option flags, the common hyperparameters, the description
// types the registry exports, and small element helpers written once over the vector type.
//
// A rule is a struct in its own header in this directory (see rmsprop.h for the annotated
// shape) and one entry in rules.def. Its kernel parts are templates over the vector type, so the
// per-ISA files instantiate them with their own types and nothing compiled with ISA flags has
// external linkage; everything else in a rule (Params, needed(), scalars()) runs in baseline code.
#pragma once

#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>

namespace adaptopt {

// Option flags (bits of Common::flags), exported to Python by name. maximize and
// decoupled_weight_decay apply to every rule; the others to the rules that list them.
#define AO_FLAGS(X) \
  X(maximize)                \
  X(decoupled_weight_decay)  \
  X(centered)                \
  X(nesterov)                \
  X(eps_in_sqrt)             \
  X(amsgrad)                 \
  X(bias_correction)

enum FlagIndex : int {
#define AO_X(name) kFlagIndex_##name,
  AO_FLAGS(AO_X)
#undef AO_X
  kNumFlags
};

namespace flag {
#define AO_X(name) constexpr unsigned name = 1u << kFlagIndex_##name;
AO_FLAGS(AO_X)
#undef AO_X
constexpr unsigned kCommon = maximize | decoupled_weight_decay;
}  // namespace flag

// Hyperparameters every rule has. Weight decay is L2 (added to the gradient) unless
// decoupled_weight_decay, which multiplies the parameter by 1 - lr * weight_decay first.
struct Common {
  double lr = 0, weight_decay = 0;
  unsigned flags = 0;
};

constexpr int kMaxSlots = 3;       // state buffers per parameter
constexpr int kMaxParams = 6;      // named hyperparameters of one rule (besides Common)
constexpr int kMaxRuleState = 1;   // per-parameter scalar state (a running product, say)
constexpr int kScalarBytes = 64;   // a rule's per-step scalars (Rule::Scalars)

// A named hyperparameter: its name as Python spells it and where it lives in Rule::Params.
template <class P>
struct Field {
  const char* name;
  double P::*member;
};

// A per-parameter scalar carried from step to step (a 0-d tensor in torch's state dict).
struct StateField {
  const char* name;
  double initial;
};

// Defaults a rule may hide: no per-parameter scalar state, buffers that start at zero, state
// created at the first step.
struct RuleBase {
  static constexpr std::array<StateField, 0> kState{};
  static constexpr bool kEagerState = false;  // torch creates Adagrad's state at construction
};

// ---------------------------------------------------------------------------------------------
// Element helpers. V is a vector type of the including ISA file (vec.h): these templates are
// instantiated there with that file's types only.

#define AO_INLINE inline __attribute__((always_inline))

// square_avg.mul_(a).addcmul_(g, g, value=1-a)
template <class V, class T>
AO_INLINE V ema_sq(V s, V g, T a, T one_minus_a) {
  return mul_add(V::set(one_minus_a) * g, g, s * V::set(a));
}

// torch's lerp_(m, g, w) for the weight w = 1 - beta: a + w*(b-a) for w < 0.5, else
// b - (b-a)*(1-w). `low` says which (w < 0.5), `w` is 1 - beta and `wc` is beta.
template <class V, class T>
AO_INLINE V lerp_ema(V m, V g, T w, T wc, bool low) {
  return low ? mul_add(V::set(w), g - m, m) : mul_add(V::set(-wc), g - m, g);
}

}  // namespace adaptopt
