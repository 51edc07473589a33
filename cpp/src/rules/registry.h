// The rule registry as baseline code sees it: what each rule is called, its hyperparameter,
// slot and state names, and the dispatch from a rule id to its baseline functions (needed slots,
// initial slot values, per-step scalars). Generated from rules.def; never included by the
// per-ISA kernel files.
#pragma once

#include <cstdint>
#include <vector>

#include "adaptopt/kernels.h"

namespace adaptopt {

struct RuleInfo {
  RuleId id;
  const char* name;
  std::vector<const char*> fields;  // Rule::Params, in order
  std::vector<const char*> slots;   // state buffers, in slot order
  std::vector<StateField> state;    // per-parameter scalar state
  unsigned flags;                   // accepted option flags, flag::kCommon included
  bool eager_state;                 // state created at construction (torch's Adagrad)
  unsigned unsigned_slots;          // bit k: slot k is never negative
};

// Every rule, in id order.
const std::vector<RuleInfo>& all_rules();
const RuleInfo& rule_info(RuleId id);

// Fills h.params from values in field order (count must match the rule's fields).
void set_params(Hyper& h, const double* values, std::size_t count);
double param_value(const Hyper& h, std::size_t field);
// Bit k set: slot k is read and written by an update with these hyperparameters.
unsigned needed_slots(const Hyper& h);
// The value a new buffer of slot k starts at.
double slot_init(const Hyper& h, int slot);
// Sets t.scalars for step number `step` (1 for the first update), in double. `state` is the
// parameter's scalar state (rule_info(h.rule).state.size() values): read, and advanced in place.
void fill_step_scalars(TensorRef& t, const Hyper& h, std::int64_t step, double* state);

}  // namespace adaptopt
