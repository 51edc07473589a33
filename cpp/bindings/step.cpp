#include "step.h"

#include <pybind11/stl.h>

#include <cmath>
#include <cstring>
#include <tuple>
#include <limits>
#include <utility>

namespace adaptopt::bindings {
namespace {

using npy = py::detail::npy_api;

View check_steps(py::handle steps, std::size_t np) {
  if (!py::isinstance<py::array_t<std::int64_t>>(steps)) throw py::type_error("steps: expected an int64 array");
  auto* a = py::detail::array_proxy(steps.ptr());
  if (!(a->flags & npy::NPY_ARRAY_C_CONTIGUOUS_) || !(a->flags & npy::NPY_ARRAY_WRITEABLE_) ||
      !(a->flags & npy::NPY_ARRAY_ALIGNED_))
    throw py::value_error("steps: expected a writeable, aligned, C-contiguous int64 array");
  if (a->nd != 1 || static_cast<std::size_t>(a->dimensions[0]) != np)
    throw py::value_error("steps: expected one counter per parameter");
  return View{a->data, np, DType::F64};
}

double* check_rule_state(py::handle st, std::size_t np, std::size_t k) {
  if (k == 0) {
    if (!st.is_none()) throw py::value_error("rule_state: this rule has no per-parameter state (pass None)");
    return nullptr;
  }
  if (!py::isinstance<py::array_t<double>>(st)) throw py::type_error("rule_state: expected a float64 array");
  auto* a = py::detail::array_proxy(st.ptr());
  if (!(a->flags & npy::NPY_ARRAY_C_CONTIGUOUS_) || !(a->flags & npy::NPY_ARRAY_WRITEABLE_) ||
      !(a->flags & npy::NPY_ARRAY_ALIGNED_) || a->nd != 2 || static_cast<std::size_t>(a->dimensions[0]) != np ||
      static_cast<std::size_t>(a->dimensions[1]) != k)
    throw py::value_error("rule_state: expected a writeable C-contiguous float64 array of shape (" +
                          std::to_string(np) + ", " + std::to_string(k) + ")");
  return reinterpret_cast<double*>(a->data);
}

PyObject* g_sparse_rows_type = nullptr;

std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// The key of the stochastic rounding bits of one parameter's step: from the seed, the param's
// index in its optimizer and the step number, so two params or two steps never share bits.
std::uint64_t stochastic_key(std::uint64_t seed, std::uint64_t param, std::int64_t step) {
  return splitmix64(seed ^ splitmix64(param ^ splitmix64(static_cast<std::uint64_t>(step))));
}  // a strong reference, kept for the process's lifetime

std::int64_t* check_counts(py::handle counts) {
  if (counts.is_none()) return nullptr;
  if (!py::isinstance<py::array_t<std::int64_t>>(counts)) throw py::type_error("counts: expected an int64 array");
  auto* a = py::detail::array_proxy(counts.ptr());
  if (!(a->flags & npy::NPY_ARRAY_C_CONTIGUOUS_) || !(a->flags & npy::NPY_ARRAY_WRITEABLE_) ||
      !(a->flags & npy::NPY_ARRAY_ALIGNED_) || a->nd != 1 || a->dimensions[0] != 2)
    throw py::value_error("counts: expected a writeable int64 array of 2 counters");
  return reinterpret_cast<std::int64_t*>(a->data);
}

}  // namespace

void set_sparse_rows_type(py::handle type) {
  if (!PyType_Check(type.ptr())) throw py::type_error("expected a type");
  Py_XDECREF(g_sparse_rows_type);
  g_sparse_rows_type = type.inc_ref().ptr();
}

namespace {

PyObject* descr_of(py::handle arr) { return py::detail::array_proxy(arr.ptr())->descr; }

std::string state_kind_name(StateKind k) {
  return k == StateKind::Math ? "float32" : k == StateKind::BF16 ? "bfloat16" : "8bit";
}

// The storage of slot buffers for a param of dtype d under state kind k.
Storage slot_storage(DType d, StateKind k) {
  if (k == StateKind::BF16) return Storage::BF16;
  if (k == StateKind::Q8) return Storage::U8;
  return d == DType::F64 ? Storage::F64 : Storage::F32;
}

}  // namespace

Group::Group(int rule, py::list params, py::list states, py::array steps, py::object rule_state,
             std::string param_label, std::size_t first_index, py::object slot_labels, py::object fresh,
             int state_kind, int mode, py::object masters, std::uint64_t seed)
    : param_label_(std::move(param_label)), first_index_(first_index), seed_(seed) {
  if (rule < 0 || rule >= kNumRules) throw py::value_error("unknown rule id " + std::to_string(rule));
  if (state_kind < 0 || state_kind >= kNumStateKinds) throw py::value_error("unknown state kind");
  if (mode < 0 || mode >= kNumParamModes) throw py::value_error("unknown param mode");
  rule_ = static_cast<RuleId>(rule);
  state_ = static_cast<StateKind>(state_kind);
  mode_ = static_cast<ParamMode>(mode);
  const RuleInfo& info = rule_info(rule_);
  const std::size_t np = params.size();
  const int nslots = static_cast<int>(info.slots.size());
  if (slot_labels.is_none()) {
    for (const char* s : info.slots) slot_labels_.push_back(std::string("state['") + s + "']");
  } else {
    slot_labels_ = slot_labels.cast<std::vector<std::string>>();
    if (static_cast<int>(slot_labels_.size()) != nslots) throw py::value_error("slot_labels: wrong length");
  }
  if (states.size() != np)
    throw py::value_error("state: expected one entry per parameter (" + std::to_string(np) + "), got " +
                          std::to_string(states.size()));
  steps_ = static_cast<std::int64_t*>(check_steps(steps, np).data);
  steps_ref_ = steps;
  nstate_ = info.state.size();
  rule_state_ = check_rule_state(rule_state, np, nstate_);
  rule_state_ref_ = rule_state;
  fresh_.assign(np, 0u);
  if (!fresh.is_none()) {
    fresh_ = fresh.cast<std::vector<unsigned>>();
    if (fresh_.size() != np) throw py::value_error("fresh: expected one entry per parameter");
  }
  const bool has_masters = !masters.is_none();
  py::list master_list = has_masters ? py::cast<py::list>(masters) : py::list();
  if (has_masters && master_list.size() != np) throw py::value_error("masters: expected one entry per parameter");
  static const std::string kMaster = "state['master']";
  tensors_.resize(np);
  held_.resize(np);
  std::vector<Interval> written;
  for (std::size_t i = 0; i < np; ++i) {
    const std::string pl = label(i);
    py::handle p = params[i];
    const View pv = check_array(p, Name{param_label_, first_index + i}, true);
    const bool half = pv.dtype == DType::F16 || pv.dtype == DType::BF16;
    if (state_ != StateKind::Math && pv.dtype == DType::F64)
      throw py::value_error(pl + ": state_dtype='" + state_kind_name(state_) +
                            "' is not available for float64 parameters (their state is float64)");
    if (mode_ != ParamMode::Round && !half)
      throw py::value_error(pl + ": " + (mode_ == ParamMode::Master ? "master_weights" : "stochastic_rounding") +
                            "=True needs a float16 or bfloat16 parameter, got " + dtype_name(pv.dtype));
    held_[i].push_back({py::reinterpret_borrow<py::object>(p), pv, -1, descr_of(p)});
    TensorRef& t = tensors_[i];
    t.p = pv.data;
    t.n = pv.n;
    t.dtype = pv.dtype;
    t.state = state_;
    t.mode = mode_;
    t.granule = state_ == StateKind::Q8 ? kQBlockElements : 1;
    written.push_back(interval_of(pv, pl));
    py::handle st = states[i];
    if (!py::isinstance<py::list>(st) || static_cast<int>(py::len(st)) != nslots)
      throw py::value_error("state of " + pl + ": expected a list of " + std::to_string(nslots) + " buffers");
    const Storage want = slot_storage(pv.dtype, state_);
    const std::string why = "that state_dtype='" + state_kind_name(state_) + "' keeps for a " +
                            dtype_name(pv.dtype) + " parameter";
    for (int s = 0; s < nslots; ++s) {
      py::handle b = py::reinterpret_borrow<py::list>(st)[static_cast<std::size_t>(s)];
      if (b.is_none()) continue;
      const Name bn{slot_labels_[static_cast<std::size_t>(s)], first_index + i};
      py::handle codes = b, scales;
      if (state_ == StateKind::Q8) {
        if (!py::isinstance<py::tuple>(b) || py::len(b) != 2)
          throw py::type_error(bn.str() + ": expected (codes, absmax) for 8-bit state");
        codes = py::reinterpret_borrow<py::tuple>(b)[0];
        scales = py::reinterpret_borrow<py::tuple>(b)[1];
      }
      const View bv = check_buffer(codes, bn, want, why);
      if (!same_shape(codes, p))
        throw py::value_error(bn.str() + ": shape " + fmt_shape(codes) + " does not match the parameter's shape " +
                              fmt_shape(p));
      held_[i].push_back({py::reinterpret_borrow<py::object>(codes), bv, s, descr_of(codes)});
      t.s[s] = bv.data;
      written.push_back(interval_of(bv, bn.str()));
      if (state_ == StateKind::Q8) {
        const Name qn{slot_labels_[static_cast<std::size_t>(s)], first_index + i, ".absmax"};
        const View qv = check_buffer(scales, qn, Storage::F32, "absmax per block of an 8-bit state buffer");
        const std::size_t blocks = (pv.n + kQBlockElements - 1) / kQBlockElements;
        if (py::detail::array_proxy(scales.ptr())->nd != 1 || qv.n != blocks)
          throw py::value_error(qn.str() + ": expected a 1-D array of " + std::to_string(blocks) + " blocks, got shape " +
                                fmt_shape(scales));
        held_[i].push_back({py::reinterpret_borrow<py::object>(scales), qv, kScalesSlot + s, descr_of(scales)});
        t.q[s] = static_cast<float*>(qv.data);
        written.push_back(interval_of(qv, qn.str()));
      }
    }
    if (has_masters && !master_list[i].is_none()) {
      py::handle m = master_list[i];
      const View mv = check_buffer(m, Name{kMaster, first_index + i}, Storage::F32, "master copy of a parameter");
      if (!same_shape(m, p))
        throw py::value_error(Name{kMaster, first_index + i}.str() + ": shape " + fmt_shape(m) +
                              " does not match the parameter's shape " + fmt_shape(p));
      held_[i].push_back({py::reinterpret_borrow<py::object>(m), mv, kMasterSlot, descr_of(m)});
      t.master = static_cast<float*>(mv.data);
      written.push_back(interval_of(mv, Name{kMaster, first_index + i}.str()));
    }
  }
  sort_and_check_disjoint(written);
  written_ = std::move(written);
}

int Group::traverse(visitproc visit, void* arg) const {
  for (const auto& per : held_)
    for (const Held& h : per) Py_VISIT(h.obj.ptr());
  Py_VISIT(steps_ref_.ptr());
  Py_VISIT(rule_state_ref_.ptr());
  return 0;
}

void Group::clear() {
  cleared_ = true;
  tensors_.clear();
  held_.clear();
  written_.clear();
  fresh_.clear();
  steps_ = nullptr;
  rule_state_ = nullptr;
  steps_ref_ = py::object();
  rule_state_ref_ = py::object();
}

py::list Group::arrays(std::size_t i) const {
  if (i >= held_.size()) throw py::index_error("param index out of range");
  py::list out;
  out.append(held_[i][0].obj);
  for (std::size_t s = 0; s < slot_labels_.size(); ++s) out.append(py::none());
  for (std::size_t k = 1; k < held_[i].size(); ++k)
    if (held_[i][k].slot >= 0 && held_[i][k].slot < kScalesSlot)
      out[static_cast<std::size_t>(held_[i][k].slot) + 1] = held_[i][k].obj;
  return out;
}

void Group::check_held(std::size_t i) const {
  // The arrays may have changed since construction (flags.writeable cleared, dtype or shape
  // reassigned in place): check them again, so nothing is written behind their back.
  static const std::string kMaster = "state['master']";
  constexpr int kNeed = py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_ | py::detail::npy_api::NPY_ARRAY_ALIGNED_ |
                        py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
  for (const Held& h : held_[i]) {
    // Fast: the same data, dtype object, size and the flags writing needs (pointer compares).
    const auto* a = py::detail::array_proxy(h.obj.ptr());
    if (a->data == h.view.data && a->descr == h.descr && (a->flags & kNeed) == kNeed) {
      std::size_t n = 1;
      for (int d = 0; d < a->nd; ++d) n *= static_cast<std::size_t>(a->dimensions[d]);
      if (n == h.view.n) continue;
    }
    View now;
    if (h.slot < 0) {
      now = check_array(h.obj, Name{param_label_, first_index_ + i}, true);
    } else {
      const Name name = h.slot == kMasterSlot ? Name{kMaster, first_index_ + i}
                        : h.slot >= kScalesSlot
                            ? Name{slot_labels_[static_cast<std::size_t>(h.slot - kScalesSlot)], first_index_ + i, ".absmax"}
                            : Name{slot_labels_[static_cast<std::size_t>(h.slot)], first_index_ + i};
      now = check_buffer(h.obj, name, h.view.storage, "it had when the optimizer was built");
    }
    if (now.data != h.view.data || now.n != h.view.n || now.storage != h.view.storage)
      throw py::value_error(Name{h.slot < 0 ? param_label_ : std::string("a state buffer of ") + param_label_,
                                 first_index_ + i}.str() +
                            ": its data, dtype or size changed since the optimizer was built");
  }
}

namespace {

void check_not_written(const View& v, const Name& name, const std::vector<const Group*>& all) {
  const auto lo = reinterpret_cast<std::uintptr_t>(v.data);
  const auto hi = lo + v.n * storage_bytes(v.storage);
  for (const Group* other : all)
    if (const Interval* o = find_overlap(other->written(), lo, hi))
      throw py::value_error(name.str() + " overlaps " + o->label + " in memory (a gradient must not share " +
                            "memory with a buffer the step writes)");
}

}  // namespace

void Group::collect(PyObject* const* grads, std::size_t offset, const Hyper* h, std::uint32_t group,
                    const std::vector<const Group*>& all, Batch& batch) const {
  static const std::string kGrads = "grads";
  if (cleared_) throw py::value_error("this group was cleared by the garbage collector");
  const unsigned needed = needed_slots(*h);
  const auto& fns = batch.table->rule[static_cast<int>(rule_)];
  for (std::size_t i = 0; i < tensors_.size(); ++i) {
    py::handle g(grads[offset + i]);
    if (g.is_none()) continue;  // torch semantics: a parameter without a gradient is skipped
    const Name gn{kGrads, offset + i};
    const TensorRef& t = tensors_[i];
    for (int s = 0; s < kMaxSlots; ++s)
      if ((needed >> s & 1u) && t.s[s] == nullptr)
        throw py::value_error("state of " + label(i) + " lacks a buffer these hyperparameters need");
    check_held(i);
    if (steps_[i] == std::numeric_limits<std::int64_t>::max())
      throw py::value_error("state of " + label(i) + ": the step counter is at its maximum (2**63 - 1)");
    if (mode_ == ParamMode::Master && t.master == nullptr)
      throw py::value_error("state of " + label(i) + " lacks the master copy master_weights=True needs");
    TensorRef base = t;
    base.group = group;
    base.fresh = fresh_[i];
    base.needed = needed;
    base.fn = fns[static_cast<int>(t.dtype)][static_cast<int>(state_)][static_cast<int>(mode_)];
    if (base.fn == nullptr) throw py::value_error("state of " + label(i) + ": no kernel for this storage");
    if (mode_ == ParamMode::Stochastic) base.key = stochastic_key(seed_, first_index_ + i, steps_[i] + 1);
    batch.scalars(base, h, steps_[i] + 1, rule_state_ ? rule_state_ + i * nstate_ : nullptr, nstate_);
    if (g_sparse_rows_type != nullptr && PyObject_TypeCheck(g.ptr(), reinterpret_cast<PyTypeObject*>(g_sparse_rows_type))) {
      collect_rows(i, py::reinterpret_borrow<py::tuple>(g), gn, base, h, all, batch);
    } else {
      const View gv = check_array(g, gn, false, static_cast<int>(t.dtype));
      if (!same_shape(g, held_[i][0].obj))
        throw py::value_error(gn.str() + ": shape " + fmt_shape(g) + " does not match the parameter's shape " +
                              fmt_shape(held_[i][0].obj));
      check_not_written(gv, gn, all);
      base.g = gv.data;
      batch.tensors.push_back(base);
      batch.hypers.push_back(h);
    }
    batch.counters.push_back(&steps_[i]);
    if (fresh_[i] != 0) batch.fresh.push_back(&fresh_[i]);
  }
}

void Group::collect_rows(std::size_t i, py::tuple rows, const Name& gn, const TensorRef& base, const Hyper* h,
                         const std::vector<const Group*>& all, Batch& batch) const {
  py::handle param = held_[i][0].obj;
  auto* pa = py::detail::array_proxy(param.ptr());
  if (rows.size() != 2) throw py::type_error(gn.str() + ": expected an array, None or SparseRows");
  if (pa->nd != 2) throw py::value_error(gn.str() + ": sparse rows need a 2-D parameter, got shape " + fmt_shape(param));
  if (state_ == StateKind::Q8)
    throw py::value_error(gn.str() + ": sparse rows cannot update 8-bit state lazily (its blocks span rows); use "
                          "sparse_mode='dense' or another state_dtype");
  const auto nrows = static_cast<std::int64_t>(pa->dimensions[0]);
  const auto ncols = static_cast<std::size_t>(pa->dimensions[1]);
  py::handle idx = rows[0], vals = rows[1];
  if (!py::isinstance<py::array_t<std::int64_t>>(idx)) throw py::type_error(gn.str() + ".indices: expected int64");
  auto* ia = py::detail::array_proxy(idx.ptr());
  if (ia->nd != 1 || !(ia->flags & npy::NPY_ARRAY_C_CONTIGUOUS_) || !(ia->flags & npy::NPY_ARRAY_ALIGNED_))
    throw py::value_error(gn.str() + ".indices: expected a 1-D C-contiguous array");
  const auto k = static_cast<std::size_t>(ia->dimensions[0]);
  const View vv = check_array(vals, Name{gn.prefix, gn.index, ".values"}, false, static_cast<int>(base.dtype));
  auto* va = py::detail::array_proxy(vals.ptr());
  if (va->nd != 2 || static_cast<std::size_t>(va->dimensions[0]) != k ||
      static_cast<std::size_t>(va->dimensions[1]) != ncols)
    throw py::value_error(gn.str() + ".values: shape " + fmt_shape(vals) + " does not match (" + std::to_string(k) +
                          ", " + std::to_string(ncols) + ") for " + std::to_string(k) + " rows of " + fmt_shape(param));
  const auto* ix = static_cast<const std::int64_t*>(static_cast<const void*>(ia->data));
  for (std::size_t j = 0; j < k; ++j) {
    if (ix[j] < 0 || ix[j] >= nrows)
      throw py::value_error(gn.str() + ": row index " + std::to_string(ix[j]) + " is out of range for " +
                            std::to_string(nrows) + " rows");
    if (j > 0 && ix[j] <= ix[j - 1])
      throw py::value_error(gn.str() + ": row indices must be strictly increasing (duplicates summed first)");
  }
  check_not_written(vv, gn, all);
  const std::size_t es = elem_bytes(base.dtype), ss = state_ == StateKind::BF16 ? 2 : base.dtype == DType::F64 ? 8 : 4;
  auto at = [](void* p, std::size_t bytes) -> void* { return p == nullptr ? nullptr : static_cast<char*>(p) + bytes; };
  for (std::size_t j = 0; j < k; ++j) {
    const std::size_t row = static_cast<std::size_t>(ix[j]) * ncols;
    TensorRef r = base;
    r.n = ncols;
    r.p = at(base.p, row * es);
    for (int s = 0; s < kMaxSlots; ++s) r.s[s] = at(base.s[s], row * ss);
    if (base.master != nullptr) r.master = base.master + row;
    r.index = row;
    r.g = static_cast<const char*>(vv.data) + j * ncols * es;
    batch.tensors.push_back(r);
    batch.hypers.push_back(h);
  }
}

namespace {

// The step proper, shared by multi_step and Plan::step: validates every gradient of every group
// (raising before anything is written), then, without the GIL, the norm, the guard, the update
// and the counters; then the step and skip counts and the on_apply attributes.
py::tuple run_batch(const std::vector<const Group*>& groups, std::vector<Hyper>& local, py::handle grads,
                    double max_norm, bool skip_nonfinite, bool want_norm, bool want_stats, std::int64_t* counters,
                    const std::vector<std::tuple<py::handle, py::handle, py::handle>>& sets, Batch& batch) {
  // A tuple of our own holds a reference to every gradient while the kernels run without the
  // GIL: another thread may empty the caller's list meanwhile.
  py::object seq;
  if (PyTuple_CheckExact(grads.ptr())) {
    seq = py::reinterpret_borrow<py::object>(grads);
  } else {
    if (!PySequence_Check(grads.ptr())) throw py::type_error("grads: expected a sequence of arrays");
    seq = py::reinterpret_steal<py::object>(PySequence_Tuple(grads.ptr()));
    if (!seq) throw py::error_already_set();
  }
  const std::size_t ng = static_cast<std::size_t>(PyTuple_GET_SIZE(seq.ptr()));
  PyObject* const* items = &PyTuple_GET_ITEM(seq.ptr(), 0);
  std::size_t expected = 0;
  for (const Group* g : groups) expected += g->size();
  if (ng != expected)
    throw py::value_error("grads: expected " + std::to_string(expected) + " arrays (one per parameter, " +
                          "in parameter order), got " + std::to_string(ng));
  batch.reset(ng);
  std::size_t offset = 0;
  for (std::size_t k = 0; k < groups.size(); ++k) {
    groups[k]->collect(items, offset, &local[k], static_cast<std::uint32_t>(k), groups, batch);
    offset += groups[k]->size();
  }
  const bool clip = max_norm >= 0;
  std::vector<StepStats> stats(want_stats ? groups.size() : 0);
  double norm = 0;
  bool applied = true;
  std::size_t total = 0;
  for (const TensorRef& t : batch.tensors) total += t.n;
  auto work = [&] {
    if (clip || skip_nonfinite || want_norm) {
      bool nonfinite = false;
      norm = std::sqrt(grad_sumsq(batch.tensors.data(), batch.tensors.size(), &nonfinite));
      applied = !(skip_nonfinite && nonfinite);
      // torch.nn.utils.clip_grad_norm_: coef = max_norm / (norm + 1e-6), clamped to <= 1
      const double coef = max_norm / (norm + 1e-6);
      if (applied && clip && !(coef >= 1.0))
        for (Hyper& h : local) h.grad_scale *= coef;
    }
    if (applied) {
      run_step(batch.tensors.data(), batch.hypers.data(), batch.tensors.size(), want_stats ? stats.data() : nullptr,
               groups.size());
      for (std::int64_t* c : batch.counters) ++*c;
      for (unsigned* f : batch.fresh) *f = 0;
      for (const auto& [where, value] : batch.state) *where = value;
    }
  };
  if (total < kHoldGilBelow) {
    work();  // a tiny step: releasing and retaking the GIL would cost more than the step
  } else {
    py::gil_scoped_release nogil;
    work();
  }
  const StepStatus status =
      !applied ? StepStatus::skipped : (batch.counters.empty() ? StepStatus::nothing : StepStatus::applied);
  // The step has changed memory: record it before anything can raise (no Python code runs here;
  // the attributes set are the optimizer's own slots).
  if (counters != nullptr && status != StepStatus::nothing) ++counters[status == StepStatus::applied ? 0 : 1];
  if (applied)
    for (const auto& [obj, name, value] : sets)
      if (PyObject_SetAttr(obj.ptr(), name.ptr(), value.ptr()) != 0) throw py::error_already_set();
  py::object norm_obj = (clip || skip_nonfinite || want_norm) ? py::object(py::float_(norm)) : py::object(py::none());
  py::object stats_obj = py::none();
  if (want_stats && applied) stats_obj = py::cast(stats);
  return py::make_tuple(norm_obj, static_cast<int>(status), stats_obj);
}

}  // namespace

py::tuple multi_step(const std::vector<const Group*>& groups, const std::vector<const Hyper*>& hypers,
                     py::object grads, double max_norm, bool skip_nonfinite, bool want_norm, bool want_stats,
                     py::object counts, py::object on_apply, double grad_scale) {
  if (groups.size() != hypers.size()) throw py::value_error("one Hyper per group expected");
  if (!(std::isfinite(grad_scale) && grad_scale > 0))
    throw py::value_error("grad_scale: expected a finite value > 0, got " + std::to_string(grad_scale));
  std::int64_t* const counters = check_counts(counts);
  std::vector<std::tuple<py::handle, py::handle, py::handle>> sets;
  if (!on_apply.is_none()) {
    for (py::handle op : py::cast<py::list>(on_apply)) {
      auto t = py::cast<py::tuple>(op);
      if (t.size() != 3 || !PyUnicode_Check(t[1].ptr())) throw py::value_error("on_apply: expected (object, name, value)");
      sets.emplace_back(t[0], t[1], t[2]);
    }
  }
  // Local copies: the clipping scale of this step goes into them, not into the caller's.
  std::vector<Hyper> local(groups.size());
  for (std::size_t k = 0; k < groups.size(); ++k) {
    if (groups[k] == nullptr) throw py::type_error("None group");
    if (hypers[k] == nullptr) throw py::type_error("None hyper");
    if (hypers[k]->rule != groups[k]->rule()) throw py::value_error("hyperparameters are for another rule");
    local[k] = *hypers[k];
    local[k].grad_scale *= grad_scale;
  }
  Batch batch;
  py::tuple r = run_batch(groups, local, grads, max_norm, skip_nonfinite, want_norm, want_stats, counters, sets, batch);
  return py::make_tuple(r[0], static_cast<StepStatus>(r[1].cast<int>()), r[2]);
}

Plan::Plan(py::list entries, py::array counts) {
  counts_ = check_counts(counts);
  if (counts_ == nullptr) throw py::value_error("counts: expected an int64 array of 2 counters");
  counts_ref_ = counts;
  static const py::str kParams("params");
  params_key_ = kParams;
  for (py::handle item : entries) {
    auto t = py::cast<py::tuple>(item);
    if (t.size() != 5) throw py::value_error("Plan: expected (group, hyper, group dict, keys, values) entries");
    Entry e;
    e.group_obj = py::reinterpret_borrow<py::object>(t[0]);
    e.group = &py::cast<const Group&>(t[0]);
    e.hyper = py::cast<Hyper>(t[1]);
    e.dict = py::reinterpret_borrow<py::object>(t[2]);
    if (!PyDict_Check(e.dict.ptr())) throw py::type_error("Plan: a group must be a dict");
    e.params = py::reinterpret_borrow<py::object>(PyDict_GetItemWithError(e.dict.ptr(), kParams.ptr()));
    if (!e.params || !PyList_Check(e.params.ptr()) ||
        static_cast<std::size_t>(PyList_GET_SIZE(e.params.ptr())) != e.group->size())
      throw py::value_error("Plan: the group's params list does not match its native group");
    for (std::size_t i = 0; i < e.group->size(); ++i)
      e.param_objs.push_back(py::reinterpret_borrow<py::object>(PyList_GET_ITEM(e.params.ptr(), i)));
    auto keys = py::cast<py::tuple>(t[3]), values = py::cast<py::tuple>(t[4]);
    if (keys.size() != values.size()) throw py::value_error("Plan: keys and values differ in length");
    for (std::size_t k = 0; k < keys.size(); ++k) {
      e.keys.push_back(py::reinterpret_borrow<py::object>(keys[k]));
      e.values.push_back(py::reinterpret_borrow<py::object>(values[k]));
    }
    groups_.push_back(e.group);
    entries_.push_back(std::move(e));
  }
}

bool Plan::current() const {
  for (const Entry& e : entries_) {
    PyObject* d = e.dict.ptr();
    if (PyDict_GetItemWithError(d, params_key_.ptr()) != e.params.ptr()) return false;
    const std::size_t n = e.param_objs.size();
    if (static_cast<std::size_t>(PyList_GET_SIZE(e.params.ptr())) != n) return false;
    for (std::size_t i = 0; i < n; ++i)
      if (PyList_GET_ITEM(e.params.ptr(), i) != e.param_objs[i].ptr()) return false;
    // The values the Hyper was built from, by identity (the plan holds them: no id is reused);
    // only immutable values are planned, so the same object means the same value.
    for (std::size_t k = 0; k < e.keys.size(); ++k)
      if (PyDict_GetItemWithError(d, e.keys[k].ptr()) != e.values[k].ptr()) return false;
  }
  if (PyErr_Occurred()) throw py::error_already_set();
  return true;
}

py::object Plan::step(py::handle grads, double max_norm, bool skip_nonfinite, bool want_stats) {
  if (!current()) return py::none();
  local_.resize(entries_.size());
  for (std::size_t k = 0; k < entries_.size(); ++k) local_[k] = entries_[k].hyper;
  static const std::vector<std::tuple<py::handle, py::handle, py::handle>> kNoSets;
  py::tuple r = run_batch(groups_, local_, grads, max_norm, skip_nonfinite, false, want_stats, counts_, kNoSets, batch_);
  return py::make_tuple(r[0], r[2]);
}

int Plan::traverse(visitproc visit, void* arg) const {
  Py_VISIT(counts_ref_.ptr());
  for (const Entry& e : entries_) {
    Py_VISIT(e.group_obj.ptr());
    Py_VISIT(e.dict.ptr());
    Py_VISIT(e.params.ptr());
    for (const auto& o : e.param_objs) Py_VISIT(o.ptr());
    for (const auto& o : e.values) Py_VISIT(o.ptr());
  }
  return 0;
}

void Plan::clear() {
  entries_.clear();
  groups_.clear();
  counts_ref_ = py::object();
  counts_ = nullptr;
}

void commit(py::list ops) {
  struct Op {
    int kind;  // 0 setattr, 1 replace, 2 copyto
    py::handle a, b, c;
    std::size_t bytes = 0;
  };
  std::vector<Op> plan;
  static const std::string kDst = "dst", kSrc = "src";
  for (py::handle item : ops) {
    auto t = py::cast<py::tuple>(item);
    if (t.size() < 3) throw py::value_error("commit: expected (kind, ...) tuples");
    const std::string kind = py::cast<std::string>(t[0]);
    if (kind == "setattr" && t.size() == 4 && PyUnicode_Check(t[2].ptr())) {
      plan.push_back({0, t[1], t[2], t[3]});
    } else if (kind == "replace" && t.size() == 3 && PyDict_CheckExact(t[1].ptr()) && PyDict_Check(t[2].ptr())) {
      plan.push_back({1, t[1], t[2], {}});
    } else if (kind == "copyto" && t.size() == 3) {
      const View d = check_array(t[1], Name{kDst, plan.size()}, true);
      const View s = check_array(t[2], Name{kSrc, plan.size()}, false, static_cast<int>(d.dtype));
      if (!same_shape(t[1], t[2])) throw py::value_error("commit: copyto between arrays of different shapes");
      plan.push_back({2, t[1], t[2], {}, d.n * storage_bytes(d.storage)});
    } else {
      throw py::value_error("commit: unknown or malformed operation " + kind);
    }
  }
  for (const Op& op : plan) {
    if (op.kind == 0) {
      if (PyObject_SetAttr(op.a.ptr(), op.b.ptr(), op.c.ptr()) != 0) throw py::error_already_set();
    } else if (op.kind == 1) {
      PyDict_Clear(op.a.ptr());
      if (PyDict_Update(op.a.ptr(), op.b.ptr()) != 0) throw py::error_already_set();
    } else {
      std::memmove(py::detail::array_proxy(op.a.ptr())->data, py::detail::array_proxy(op.b.ptr())->data, op.bytes);
    }
  }
}

Probe::Probe(py::array p, py::array g, py::list states, int state_kind, py::object master) {
  static const std::string kP = "p", kG = "g", kS = "states", kM = "master";
  if (state_kind < 0 || state_kind >= kNumStateKinds) throw py::value_error("unknown state kind");
  const View pv = check_array(p, Name{kP, 0}, true);
  const View gv = check_array(g, Name{kG, 0}, false, static_cast<int>(pv.dtype));
  if (!same_shape(p, g)) throw py::value_error("g: shape does not match p");
  if (states.size() > static_cast<std::size_t>(kMaxSlots))
    throw py::value_error("states: at most " + std::to_string(kMaxSlots) + " arrays");
  t_.p = pv.data;
  t_.g = gv.data;
  t_.n = pv.n;
  t_.dtype = pv.dtype;
  t_.state = static_cast<StateKind>(state_kind);
  held_ = {p, g};
  std::vector<Interval> written{interval_of(pv, "p")};
  const Storage want = slot_storage(pv.dtype, t_.state);
  for (std::size_t s = 0; s < states.size(); ++s) {
    py::handle b = states[s], codes = b;
    if (t_.state == StateKind::Q8) {
      codes = py::cast<py::tuple>(b)[0];
      const View qv = check_buffer(py::cast<py::tuple>(b)[1], Name{kS, s, ".absmax"}, Storage::F32, "absmax");
      if (qv.n != (pv.n + kQBlockElements - 1) / kQBlockElements) throw py::value_error("states: absmax blocks");
      t_.q[s] = static_cast<float*>(qv.data);
      written.push_back(interval_of(qv, Name{kS, s, ".absmax"}.str()));
      held_.push_back(py::cast<py::tuple>(b)[1]);
    }
    const View sv = check_buffer(codes, Name{kS, s}, want, "state storage");
    if (!same_shape(codes, p)) throw py::value_error(Name{kS, s}.str() + ": shape does not match p");
    t_.s[s] = sv.data;
    written.push_back(interval_of(sv, Name{kS, s}.str()));
    held_.push_back(py::reinterpret_borrow<py::object>(codes));
  }
  if (!master.is_none()) {
    const View mv = check_buffer(master, Name{kM, 0}, Storage::F32, "master copy");
    if (!same_shape(master, p)) throw py::value_error("master: shape does not match p");
    t_.master = static_cast<float*>(mv.data);
    written.push_back(interval_of(mv, "master"));
    held_.push_back(master);
  }
  t_.granule = t_.state == StateKind::Q8 ? kQBlockElements : 1;
  sort_and_check_disjoint(written);
}

void Probe::run() const {
  TensorRef t = t_;
  t.fn = active_table().probe[static_cast<int>(t.dtype)][static_cast<int>(t.state)];
  if (t.fn == nullptr) throw py::value_error("no probe for this storage");
  const Hyper h;  // lr = 0: the values do not change
  const Hyper* hp = &h;
  py::gil_scoped_release nogil;
  run_step(&t, &hp, 1);
}

}  // namespace adaptopt::bindings
