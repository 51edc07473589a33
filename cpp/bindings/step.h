// The native side of one optimizer step: a param group's arrays (Group), the per-step gathering
// and validation of every gradient (collect), and multi_step, which updates every group in one
// parallel region with the GIL released. Also the bandwidth probe over the same machinery.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "buffers.h"
#include "rules/registry.h"

namespace adaptopt::bindings {

enum class StepStatus : int { nothing = 0, applied = 1, skipped = 2 };

// Steps below this many elements keep the GIL: releasing and retaking it costs more.
constexpr std::size_t kHoldGilBelow = 4096;

// Everything one step updates, gathered while validating: one TensorRef per dense tensor or per
// row of a sparse gradient, the hyperparameters of each, and what to commit once it has run.
struct Batch {
  std::vector<TensorRef> tensors;
  std::vector<const Hyper*> hypers;
  std::vector<std::int64_t*> counters;
  std::vector<unsigned*> fresh;                       // cleared after the step
  std::vector<std::pair<double*, double>> state;      // rule state values to store
  const KernelTable* table = &active_table();
  // The last step scalars computed: tensors of a group usually share their step number, and
  // pow() is too slow to call per tensor of a small step. (Not for rules with state.)
  const Hyper* last_h = nullptr;
  std::int64_t last_step = -1;
  TensorRef last;

  // Empty, keeping the capacity (a plan reuses one batch step after step).
  void reset(std::size_t tensors_hint) {
    tensors.clear();
    hypers.clear();
    counters.clear();
    fresh.clear();
    state.clear();
    tensors.reserve(tensors_hint);
    hypers.reserve(tensors_hint);
    counters.reserve(tensors_hint);
    table = &active_table();
    last_h = nullptr;
    last_step = -1;
  }

  void scalars(TensorRef& r, const Hyper* h, std::int64_t step, double* rule_state, std::size_t nstate) {
    if (nstate != 0) {
      double next[kMaxRuleState];
      for (std::size_t k = 0; k < nstate; ++k) next[k] = rule_state[k];
      fill_step_scalars(r, *h, step, next);
      for (std::size_t k = 0; k < nstate; ++k) state.emplace_back(rule_state + k, next[k]);
      return;
    }
    if (h != last_h || step != last_step) {
      fill_step_scalars(last, *h, step, nullptr);
      last_h = h;
      last_step = step;
    }
    std::copy(std::begin(last.scalars), std::end(last.scalars), std::begin(r.scalars));
  }
};


// The parameters of one param group with their state buffers, step counters and per-parameter
// rule state. Holds references to every array so the raw pointers stay valid.
class Group {
 public:
  // states[i]: one entry per slot of the rule (an array or None); steps: int64[n];
  // rule_state: float64[n, k] for a rule with k scalar state values (None when k == 0);
  // fresh[i]: bit s set when slot s of param i was created for the next step (or None).
  // state_kind: StateKind (slot buffers float32/float64, bfloat16, or (uint8 codes, float32
  // absmax per block) tuples); mode: ParamMode; masters[i]: float32 master copy or None; seed:
  // of the stochastic rounding bits.
  Group(int rule, py::list params, py::list states, py::array steps, py::object rule_state, std::string param_label,
        std::size_t first_index, py::object slot_labels, py::object fresh, int state_kind, int mode,
        py::object masters, std::uint64_t seed);

  std::size_t size() const { return tensors_.size(); }
  // Garbage-collector support: every Python object the group holds.
  int traverse(visitproc visit, void* arg) const;
  void clear();
  RuleId rule() const { return rule_; }
  const std::vector<Interval>& written() const { return written_; }
  std::string label(std::size_t i) const { return param_label_ + "[" + std::to_string(first_index_ + i) + "]"; }
  // The arrays held for param i: [param, slot 0 or None, ...].
  py::list arrays(std::size_t i) const;

  // Validates grads[offset + i] for every tensor and appends what to update to `batch`. A
  // gradient is an array of the parameter's shape, None (skip the parameter), or a tuple
  // (indices, values) of sparse rows of a 2-D parameter. Raises before anything is written.
  void collect(PyObject* const* grads, std::size_t offset, const Hyper* h, std::uint32_t group,
               const std::vector<const Group*>& all, Batch& batch) const;

 private:
  struct Held {  // an array the group writes, as checked at construction; slot < 0: the param
    py::object obj;
    View view;
    int slot;  // k: slot k; kScalesSlot + k: its absmax; kMasterSlot: the master copy
    PyObject* descr;  // its dtype object then (the array holds it alive): a cheap re-check
  };
  static constexpr int kScalesSlot = 100, kMasterSlot = 200;
  void check_held(std::size_t i) const;
  void collect_rows(std::size_t i, py::tuple rows, const Name& gn, const TensorRef& base, const Hyper* h,
                    const std::vector<const Group*>& all, Batch& batch) const;

  RuleId rule_;
  StateKind state_ = StateKind::Math;
  ParamMode mode_ = ParamMode::Round;
  std::string param_label_;
  std::size_t first_index_;
  std::uint64_t seed_ = 0;
  std::vector<std::string> slot_labels_;
  std::int64_t* steps_ = nullptr;
  double* rule_state_ = nullptr;
  std::size_t nstate_ = 0;
  std::vector<TensorRef> tensors_;
  py::object steps_ref_, rule_state_ref_;
  std::vector<std::vector<Held>> held_;  // [param][0] = the param, then its state buffers
  std::vector<Interval> written_;
  mutable std::vector<unsigned> fresh_;  // cleared once a step has used the new buffers
  bool cleared_ = false;                 // by the garbage collector: unusable
};

// The class whose instances are sparse-row gradients (adaptopt.SparseRows): only these are
// taken as (indices, values); any other tuple is refused like any other non-array.
void set_sparse_rows_type(py::handle type);

// One step of every group: validates every gradient of every group first, then, without the
// GIL, computes the global gradient norm if asked (one extra read of the gradients), skips the
// step if asked and a gradient is not finite, folds the clipping scale into the update, runs
// every tensor in one parallel region and advances the step counters and rule state.
// Returns (norm or None, StepStatus, list of StepStats per group or None).
// `counts` (int64[2], or None) counts applied and skipped steps; `on_apply` is a list of
// (object, attribute name, value) set when the step applies. Both happen inside this call,
// before it returns: an asynchronous exception (Ctrl-C) arriving around the step sees either
// none or all of the step. `grad_scale` multiplies every gradient inside the kernels, as the
// clipping coefficient does (adaptopt.distributed folds the 1/P average into it).
py::tuple multi_step(const std::vector<const Group*>& groups, const std::vector<const Hyper*>& hypers,
                     py::object grads, double max_norm, bool skip_nonfinite, bool want_norm, bool want_stats,
                     py::object counts, py::object on_apply, double grad_scale);

// A step planned once and checked each time with pointer comparisons: the native groups with
// their hyperparameters, the group dicts, their params lists and the values the
// hyperparameters were built from. step() returns None (having done nothing) when any of them
// changed: the caller then takes the full path (validating hyperparameters, creating state) and
// plans again. Every buffer and gradient check of multi_step still runs.
class Plan {
 public:
  // entries: (Group, Hyper, group dict, keys tuple, values tuple) per group; counts: as multi_step's.
  Plan(py::list entries, py::array counts);
  py::object step(py::handle grads, double max_norm, bool skip_nonfinite, bool want_stats);
  int traverse(visitproc visit, void* arg) const;
  void clear();

 private:
  struct Entry {
    py::object group_obj;
    const Group* group = nullptr;
    Hyper hyper;
    py::object dict, params;
    std::vector<py::object> param_objs, keys, values;
  };
  bool current() const;

  std::vector<Entry> entries_;
  std::vector<const Group*> groups_;
  py::object counts_ref_, params_key_;
  std::int64_t* counts_ = nullptr;
  std::vector<Hyper> local_;
  Batch batch_;  // reused: its vectors keep their capacity
};

// Applies a list of operations all at once or not at all (everything is checked first), with no
// Python code running in between: ("setattr", obj, name, value), ("replace", dict, mapping)
// (clear the dict, then fill it from the mapping), ("copyto", dst, src) (arrays of the same
// dtype and shape, dst writeable and C-contiguous, src C-contiguous).
void commit(py::list ops);

// One pass of the bandwidth probe over p, g, up to kMaxSlots state buffers (as a Group takes
// them for `state_kind`) and an optional float32 master, split over threads like a step.
class Probe {
 public:
  Probe(py::array p, py::array g, py::list states, int state_kind, py::object master);
  void run() const;

 private:
  std::vector<py::object> held_;
  TensorRef t_;
};

}  // namespace adaptopt::bindings
