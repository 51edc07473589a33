// Baseline half of the registry: every per-rule switch, generated from rules.def.
#include "rules/registry.h"

#include <cstring>
#include <stdexcept>
#include <type_traits>

namespace adaptopt {
namespace {

template <class R>
typename R::Params params_of(const Hyper& h) {
  static_assert(std::is_trivially_copyable_v<typename R::Params>);
  static_assert(sizeof(typename R::Params) == R::kFields.size() * sizeof(double), "Params: doubles only");
  static_assert(R::kFields.size() <= kMaxParams, "raise kMaxParams");
  static_assert(R::kSlots.size() <= kMaxSlots, "raise kMaxSlots");
  static_assert(R::kState.size() <= kMaxRuleState, "raise kMaxRuleState");
  static_assert(sizeof(typename R::Scalars) <= kScalarBytes, "raise kScalarBytes");
  typename R::Params p;
  std::memcpy(&p, h.params, sizeof p);
  return p;
}

template <class R>
RuleInfo info_of(RuleId id) {
  RuleInfo r{id, R::kName, {}, {}, {}, R::kFlags | flag::kCommon, R::kEagerState, R::kUnsignedSlots};
  for (const auto& f : R::kFields) r.fields.push_back(f.name);
  for (const char* s : R::kSlots) r.slots.push_back(s);
  for (const auto& s : R::kState) r.state.push_back(s);
  return r;
}

// Calls f(R{}) with the rule type of `id`.
template <class F>
decltype(auto) visit(RuleId id, F&& f) {
  switch (id) {
#define AO_RULE(Type)   \
  case RuleId::Type:    \
    return f(rules::Type{});
#include "rules/rules.def"
  }
  throw std::logic_error("unknown rule id");
}

}  // namespace

const std::vector<RuleInfo>& all_rules() {
  static const std::vector<RuleInfo> all = [] {
    std::vector<RuleInfo> v;
#define AO_RULE(Type) v.push_back(info_of<rules::Type>(RuleId::Type));
#include "rules/rules.def"
    return v;
  }();
  return all;
}

const RuleInfo& rule_info(RuleId id) { return all_rules().at(static_cast<std::size_t>(id)); }

void set_params(Hyper& h, const double* values, std::size_t count) {
  visit(h.rule, [&](auto r) {
    using R = decltype(r);
    if (count != R::kFields.size()) throw std::invalid_argument("wrong number of hyperparameters");
    typename R::Params p;
    for (std::size_t i = 0; i < count; ++i) p.*(R::kFields[i].member) = values[i];
    std::memcpy(h.params, &p, sizeof p);
  });
}

double param_value(const Hyper& h, std::size_t field) {
  return visit(h.rule, [&](auto r) {
    using R = decltype(r);
    return params_of<R>(h).*(R::kFields.at(field).member);
  });
}

unsigned needed_slots(const Hyper& h) {
  return visit(h.rule, [&](auto r) { return decltype(r)::needed(h.common, params_of<decltype(r)>(h)); });
}

double slot_init(const Hyper& h, int slot) {
  return visit(h.rule, [&](auto r) { return decltype(r)::slot_init(params_of<decltype(r)>(h), slot); });
}

void fill_step_scalars(TensorRef& t, const Hyper& h, std::int64_t step, double* state) {
  visit(h.rule, [&](auto r) {
    using R = decltype(r);
    const typename R::Scalars s = R::scalars(h.common, params_of<R>(h), step, state);
    std::memcpy(t.scalars, &s, sizeof s);
  });
}

}  // namespace adaptopt
