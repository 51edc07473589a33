// The native side of one optimizer step: a param group's arrays (Group), the per-step gathering
// and validation of every gradient (collect), and multi_step, which updates every group in one
// parallel region with the GIL released. Also the bandwidth probe over the same machinery.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

#include "buffers.h"
#include "rules/registry.h"

namespace adaptopt::bindings {

enum class StepStatus : int { nothing = 0, applied = 1, skipped = 2 };

struct Batch;

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
// none or all of the step.
py::tuple multi_step(const std::vector<const Group*>& groups, const std::vector<const Hyper*>& hypers,
                     py::object grads, double max_norm, bool skip_nonfinite, bool want_norm, bool want_stats,
                     py::object counts, py::object on_apply);

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
