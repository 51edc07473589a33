// pybind11 module `adaptopt._core`: buffer checks (each message names the argument), raw
// pointer extraction, and the GIL released around the kernels. Arrays are never converted or
// copied: a buffer of the wrong kind is an error, because a silent copy would lose the update.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "adaptopt/kernels.h"

namespace py = pybind11;
using namespace adaptopt;

namespace {

using npy = py::detail::npy_api;

std::string fmt_shape(const py::detail::PyArray_Proxy* a) {
  std::string s = "(";
  for (int d = 0; d < a->nd; ++d) {
    s += std::to_string(a->dimensions[d]);
    if (a->nd == 1 || d + 1 < a->nd) s += ",";
    if (d + 1 < a->nd) s += " ";
  }
  return s + ")";
}

std::string dtype_str(py::handle arr) { return py::str(arr.attr("dtype")).cast<std::string>(); }

// A buffer that the kernels read or write: checked once, then used through raw pointers.
struct View {
  void* data = nullptr;
  std::size_t n = 0;
  DType dtype = DType::F32;
};

bool native_order(const py::detail::PyArrayDescr_Proxy* d) {
  const char bo = d->byteorder;
  return bo == '=' || bo == '|' ||
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
         bo == '<';
#else
         bo == '>';
#endif
}

// Names an argument in error messages ("grads[3]"); the string is built only on error.
struct Name {
  const std::string& prefix;
  std::size_t index;
  const char* suffix = "";
  std::string str() const { return prefix + "[" + std::to_string(index) + "]" + suffix; }
};

// Checks that `obj` is an ndarray we may use in place; `name` names it in every message.
// want < 0: any of float32/float64; otherwise exactly that dtype.
View check_array(py::handle obj, const Name& name, bool writeable, int want = -1) {
  if (!py::isinstance<py::array>(obj))
    throw py::type_error(name.str() + ": expected a numpy.ndarray, got " +
                         std::string(py::str(py::type::handle_of(obj).attr("__name__"))));
  auto* a = py::detail::array_proxy(obj.ptr());
  auto* d = py::detail::array_descriptor_proxy(a->descr);
  int kind = -1;
  if (native_order(d)) {
    if (d->type_num == npy::NPY_FLOAT_) kind = 0;
    else if (d->type_num == npy::NPY_DOUBLE_) kind = 1;
  }
  if (kind < 0) {
    if (want >= 0)
      throw py::type_error(name.str() + ": dtype " + dtype_str(obj) + " does not match the parameter's " +
                           (want == 0 ? "float32" : "float64") + " (no implicit casts)");
    throw py::type_error(name.str() + ": dtype " + dtype_str(obj) +
                         " is not supported (expected float32 or float64)");
  }
  if (want >= 0 && kind != want)
    throw py::type_error(name.str() + ": dtype " + dtype_str(obj) + " does not match the parameter's " +
                         (want == 0 ? "float32" : "float64") + " (no implicit casts)");
  if (!(a->flags & npy::NPY_ARRAY_C_CONTIGUOUS_))
    throw py::value_error(name.str() + ": array must be C-contiguous (got strides that are not; " +
                          "use np.ascontiguousarray on a copy you then keep)");
  if (!(a->flags & npy::NPY_ARRAY_ALIGNED_))
    throw py::value_error(name.str() + ": array data is not aligned to its element size");
  if (writeable && !(a->flags & npy::NPY_ARRAY_WRITEABLE_))
    throw py::value_error(name.str() + ": array is read-only (it must be writeable: it is updated in place)");
  View v;
  v.data = a->data;
  v.n = 1;
  for (int i = 0; i < a->nd; ++i) v.n *= static_cast<std::size_t>(a->dimensions[i]);
  v.dtype = kind == 0 ? DType::F32 : DType::F64;
  return v;
}

bool same_shape(py::handle x, py::handle y) {
  auto* a = py::detail::array_proxy(x.ptr());
  auto* b = py::detail::array_proxy(y.ptr());
  if (a->nd != b->nd) return false;
  for (int i = 0; i < a->nd; ++i)
    if (a->dimensions[i] != b->dimensions[i]) return false;
  return true;
}

std::size_t elem_bytes(DType d) { return d == DType::F32 ? 4 : 8; }

// A byte range [lo, hi) of a buffer with the label used in error messages.
struct Interval {
  std::uintptr_t lo, hi;
  std::string label;
};

Interval interval_of(const View& v, std::string label) {
  auto lo = reinterpret_cast<std::uintptr_t>(v.data);
  return {lo, lo + v.n * elem_bytes(v.dtype), std::move(label)};
}

// Drops empty ranges, sorts the rest and returns the first pair that shares a byte, if any.
std::pair<const Interval*, const Interval*> sort_and_find_overlap(std::vector<Interval>& iv) {
  iv.erase(std::remove_if(iv.begin(), iv.end(), [](const Interval& x) { return x.lo == x.hi; }), iv.end());
  std::sort(iv.begin(), iv.end(), [](const Interval& x, const Interval& y) { return x.lo < y.lo; });
  for (std::size_t i = 1; i < iv.size(); ++i)
    if (iv[i].lo < iv[i - 1].hi) return {&iv[i - 1], &iv[i]};
  return {nullptr, nullptr};
}

void sort_and_check_disjoint(std::vector<Interval>& iv) {
  auto [a, b] = sort_and_find_overlap(iv);
  if (a != nullptr)
    throw py::value_error(a->label + " and " + b->label +
                          " overlap in memory (each parameter and state buffer must be a separate array)");
}

// Label of the sorted, disjoint interval that overlaps [lo, hi), or nullptr.
const Interval* find_overlap(const std::vector<Interval>& sorted, std::uintptr_t lo, std::uintptr_t hi) {
  if (lo == hi) return nullptr;
  auto it = std::upper_bound(sorted.begin(), sorted.end(), lo,
                             [](std::uintptr_t x, const Interval& y) { return x < y.lo; });
  if (it != sorted.end() && it->lo < hi) return &*it;
  if (it != sorted.begin() && std::prev(it)->hi > lo) return &*std::prev(it);
  return nullptr;
}

int slots_of(Algo a) {
  switch (a) {
    case Algo::RMSprop: return 3;
    case Algo::Adagrad: return 1;
    case Algo::Adadelta: return 2;
    case Algo::Adam: return 3;
    case Algo::Probe: return 3;
    case Algo::Sgd: return 1;
  }
  return 0;
}

// Which state slots an update with these hyperparameters reads and writes.
bool slot_needed(const Hyper& h, int slot) {
  switch (h.algo) {
    case Algo::RMSprop:
      return slot == 0 || (slot == 1 && h.momentum != 0) || (slot == 2 && (h.flags & kCentered));
    case Algo::Adagrad:
      return slot == 0;
    case Algo::Adadelta:
      return slot <= 1;
    case Algo::Adam:
      return slot <= 1 || (slot == 2 && (h.flags & kAmsgrad));
    case Algo::Probe:
      return false;  // streams whatever buffers are present
    case Algo::Sgd:
      return slot == 0 && h.momentum != 0;
  }
  return false;
}

// Everything one step updates, gathered while validating: one TensorRef per dense tensor or per
// row of a sparse gradient, the hyperparameters of each, and one step counter per parameter.
struct Batch {
  std::vector<TensorRef> tensors;
  std::vector<const Hyper*> hypers;
  std::vector<std::int64_t*> counters;
  // The last step scalars computed: tensors of a group usually share their step number, and
  // pow() is too slow to call per tensor of a small step.
  const Hyper* last_h = nullptr;
  std::int64_t last_step = -1;
  double last_c0 = 0, last_c1 = 0;

  void scalars(TensorRef& r, const Hyper* h, std::int64_t step) {
    if (h != last_h || step != last_step) {
      fill_step_scalars(r, *h, step);
      last_h = h;
      last_step = step;
      last_c0 = r.c0;
      last_c1 = r.c1;
    }
    r.c0 = last_c0;
    r.c1 = last_c1;
  }
};

// The parameters of one param group with their state buffers and step counters. Holds
// references to every array so the raw pointers stay valid.
class Group {
 public:
  Group(int algo, py::list params, py::list states, py::array steps, std::string param_label,
        std::size_t first_index, std::vector<std::string> slot_labels)
      : algo_(static_cast<Algo>(algo)), param_label_(std::move(param_label)), first_index_(first_index),
        slot_labels_(std::move(slot_labels)) {
    if (algo < 0 || algo >= kNumAlgos) throw py::value_error("unknown algorithm id");
    const std::size_t np = params.size();
    const int nslots = slots_of(algo_);
    if (states.size() != np)
      throw py::value_error("state: expected one entry per parameter (" + std::to_string(np) + "), got " +
                            std::to_string(states.size()));
    if (static_cast<int>(slot_labels_.size()) != nslots) throw py::value_error("slot_labels: wrong length");
    View sv = check_steps(steps, np);
    steps_ = static_cast<std::int64_t*>(sv.data);
    steps_ref_ = steps;
    tensors_.resize(np);
    held_.resize(np);
    std::vector<Interval> written;
    for (std::size_t i = 0; i < np; ++i) {
      const std::string pl = label(i);
      py::handle p = params[i];
      const View pv = check_array(p, Name{param_label_, first_index + i}, true);
      held_[i].push_back({py::reinterpret_borrow<py::object>(p), pv, -1});
      TensorRef& t = tensors_[i];
      t.p = pv.data;
      t.n = pv.n;
      t.dtype = pv.dtype;
      written.push_back(interval_of(pv, pl));
      py::handle st = states[i];
      if (!py::isinstance<py::list>(st) || static_cast<int>(py::len(st)) != nslots)
        throw py::value_error("state of " + pl + ": expected a list of " + std::to_string(nslots) + " buffers");
      for (int s = 0; s < nslots; ++s) {
        py::handle b = py::reinterpret_borrow<py::list>(st)[s];
        if (b.is_none()) continue;
        const Name bn{slot_labels_[s], first_index + i};
        const std::string bl = bn.str();
        const View bv = check_array(b, bn, true, static_cast<int>(pv.dtype));
        if (!same_shape(b, p))
          throw py::value_error(bl + ": shape " + fmt_shape(py::detail::array_proxy(b.ptr())) +
                                " does not match the parameter's shape " +
                                fmt_shape(py::detail::array_proxy(p.ptr())));
        held_[i].push_back({py::reinterpret_borrow<py::object>(b), bv, s});
        t.s[s] = bv.data;
        written.push_back(interval_of(bv, bl));
      }
    }
    sort_and_check_disjoint(written);
    written_ = std::move(written);
  }

  std::size_t size() const { return tensors_.size(); }
  Algo algo() const { return algo_; }
  const std::vector<Interval>& written() const { return written_; }
  std::string label(std::size_t i) const { return param_label_ + "[" + std::to_string(first_index_ + i) + "]"; }

  void check_hyper(const Hyper& h) const {
    if (h.algo != algo_) throw py::value_error("hyperparameters are for another algorithm");
  }

  // Validates grads[offset + i] for every tensor and appends what to update to `batch`.
  // A gradient is an array of the parameter's shape, None (skip the parameter), or a tuple
  // (indices, values) of sparse rows of a 2-D parameter (int64 indices, strictly increasing).
  // Raises before anything is written.
  void collect(PyObject* const* grads, std::size_t offset, const Hyper* h, std::uint32_t group,
               const std::vector<const Group*>& all, Batch& batch) const {
    static const std::string kGrads = "grads";
    for (std::size_t i = 0; i < tensors_.size(); ++i) {
      py::handle g(grads[offset + i]);
      if (g.is_none()) continue;  // torch semantics: a parameter without a gradient is skipped
      const Name gn{kGrads, offset + i};
      const TensorRef& t = tensors_[i];
      for (int s = 0; s < kMaxSlots; ++s)
        if (slot_needed(*h, s) && t.s[s] == nullptr)
          throw py::value_error("state of " + label(i) + " lacks a buffer these hyperparameters need");
      check_held(i);
      if (steps_[i] == std::numeric_limits<std::int64_t>::max())
        throw py::value_error("state of " + label(i) + ": the step counter is at its maximum (2**63 - 1)");
      TensorRef base = t;
      base.group = group;
      batch.scalars(base, h, steps_[i] + 1);
      if (PyTuple_Check(g.ptr())) {
        collect_rows(i, py::reinterpret_borrow<py::tuple>(g), gn, base, h, all, batch);
      } else {
        const View gv = check_array(g, gn, false, static_cast<int>(t.dtype));
        if (!same_shape(g, held_[i][0].obj))
          throw py::value_error(gn.str() + ": shape " + fmt_shape(py::detail::array_proxy(g.ptr())) +
                                " does not match the parameter's shape " +
                                fmt_shape(py::detail::array_proxy(held_[i][0].obj.ptr())));
        check_not_written(gv, gn, all);
        base.g = gv.data;
        batch.tensors.push_back(base);
        batch.hypers.push_back(h);
      }
      batch.counters.push_back(&steps_[i]);
    }
  }

 private:
  // An array the group writes, as checked at construction. slot < 0 for the parameter.
  struct Held {
    py::object obj;
    View view;
    int slot;
  };

  // The arrays may have changed since construction (flags.writeable cleared, dtype or shape
  // reassigned in place): check them again, so nothing is written behind their back.
  void check_held(std::size_t i) const {
    for (const Held& h : held_[i]) {
      const Name name = h.slot < 0 ? Name{param_label_, first_index_ + i}
                                   : Name{slot_labels_[static_cast<std::size_t>(h.slot)], first_index_ + i};
      const View now = check_array(h.obj, name, true, h.slot < 0 ? -1 : static_cast<int>(h.view.dtype));
      if (now.data != h.view.data || now.n != h.view.n || now.dtype != h.view.dtype)
        throw py::value_error(name.str() + ": its data, dtype or size changed since the optimizer was built");
    }
  }

  static void check_not_written(const View& v, const Name& name, const std::vector<const Group*>& all) {
    const auto lo = reinterpret_cast<std::uintptr_t>(v.data);
    const auto hi = lo + v.n * elem_bytes(v.dtype);
    for (const Group* other : all)
      if (const Interval* o = find_overlap(other->written(), lo, hi))
        throw py::value_error(name.str() + " overlaps " + o->label + " in memory (a gradient must not share " +
                              "memory with a buffer the step writes)");
  }

  void collect_rows(std::size_t i, py::tuple rows, const Name& gn, const TensorRef& base, const Hyper* h,
                    const std::vector<const Group*>& all, Batch& batch) const {
    auto* pa = py::detail::array_proxy(held_[i][0].obj.ptr());
    if (rows.size() != 2) throw py::type_error(gn.str() + ": expected an array, None or SparseRows");
    if (pa->nd != 2)
      throw py::value_error(gn.str() + ": sparse rows need a 2-D parameter, got shape " + fmt_shape(pa));
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
      throw py::value_error(gn.str() + ".values: shape " + fmt_shape(va) + " does not match (" + std::to_string(k) +
                            ", " + std::to_string(ncols) + ") for " + std::to_string(k) + " rows of " + fmt_shape(pa));
    const auto* ix = static_cast<const std::int64_t*>(static_cast<const void*>(ia->data));
    for (std::size_t j = 0; j < k; ++j) {
      if (ix[j] < 0 || ix[j] >= nrows)
        throw py::value_error(gn.str() + ": row index " + std::to_string(ix[j]) + " is out of range for " +
                              std::to_string(nrows) + " rows");
      if (j > 0 && ix[j] <= ix[j - 1])
        throw py::value_error(gn.str() + ": row indices must be strictly increasing (duplicates summed first)");
    }
    check_not_written(vv, gn, all);
    const std::size_t es = elem_bytes(base.dtype);
    auto at = [](void* p, std::size_t bytes) -> void* {
      return p == nullptr ? nullptr : static_cast<char*>(p) + bytes;
    };
    for (std::size_t j = 0; j < k; ++j) {
      const std::size_t off = static_cast<std::size_t>(ix[j]) * ncols * es;
      TensorRef r = base;
      r.n = ncols;
      r.p = at(base.p, off);
      for (int s = 0; s < kMaxSlots; ++s) r.s[s] = at(base.s[s], off);
      r.g = static_cast<const char*>(vv.data) + j * ncols * es;
      batch.tensors.push_back(r);
      batch.hypers.push_back(h);
    }
  }

  static View check_steps(py::array steps, std::size_t np) {
    if (!py::isinstance<py::array_t<std::int64_t>>(steps)) throw py::type_error("steps: expected an int64 array");
    auto* a = py::detail::array_proxy(steps.ptr());
    if (!(a->flags & npy::NPY_ARRAY_C_CONTIGUOUS_) ||
        !(a->flags & npy::NPY_ARRAY_WRITEABLE_) || !(a->flags & npy::NPY_ARRAY_ALIGNED_))
      throw py::value_error("steps: expected a writeable, aligned, C-contiguous int64 array");
    if (static_cast<std::size_t>(py::len(steps)) != np || a->nd != 1)
      throw py::value_error("steps: expected one counter per parameter");
    View v;
    v.data = a->data;
    v.n = np;
    return v;
  }

  Algo algo_;
  std::string param_label_;
  std::size_t first_index_;
  std::vector<std::string> slot_labels_;
  std::int64_t* steps_ = nullptr;
  std::vector<TensorRef> tensors_;
  py::object steps_ref_;
  std::vector<std::vector<Held>> held_;  // [param][0] = the param, then its state buffers
  std::vector<Interval> written_;
};

// One step of every group: validates every gradient of every group first, then, without the
// GIL, computes the global gradient norm if asked (one extra read of the gradients), skips the
// step if asked and a gradient is not finite, folds the clipping scale into the update, runs
// every tensor in one parallel region and advances the step counters.
// Returns (norm or None, status, stats or None); stats holds per group (sum g^2, sum du^2,
// sum lr_eff, min lr_eff, max lr_eff, element count).
enum StepStatus : int { kNothing = 0, kApplied = 1, kSkipped = 2 };
py::tuple multi_step(const std::vector<const Group*>& groups, const std::vector<const Hyper*>& hypers,
                     py::object grads, double max_norm, bool skip_nonfinite, bool want_norm, bool want_stats) {
  if (groups.size() != hypers.size()) throw py::value_error("one Hyper per group expected");
  // A tuple of our own holds a reference to every gradient while the kernels run without the
  // GIL: another thread may empty the caller's list meanwhile.
  if (!PySequence_Check(grads.ptr())) throw py::type_error("grads: expected a sequence of arrays");
  py::object seq = py::reinterpret_steal<py::object>(PySequence_Tuple(grads.ptr()));
  if (!seq) throw py::error_already_set();
  const std::size_t ng = static_cast<std::size_t>(PyTuple_GET_SIZE(seq.ptr()));
  PyObject* const* items = &PyTuple_GET_ITEM(seq.ptr(), 0);
  std::size_t expected = 0;
  for (const Group* g : groups) expected += g->size();
  if (ng != expected)
    throw py::value_error("grads: expected " + std::to_string(expected) + " arrays (one per parameter, " +
                          "in parameter order), got " + std::to_string(ng));
  // Local copies: the clipping scale of this step goes into them, not into the caller's.
  std::vector<Hyper> local(groups.size());
  for (std::size_t k = 0; k < groups.size(); ++k) {
    if (groups[k] == nullptr || hypers[k] == nullptr) throw py::type_error("None group or hyper");
    groups[k]->check_hyper(*hypers[k]);
    local[k] = *hypers[k];
  }
  Batch batch;
  batch.tensors.reserve(ng);
  batch.hypers.reserve(ng);
  batch.counters.reserve(ng);
  std::size_t offset = 0;
  for (std::size_t k = 0; k < groups.size(); ++k) {
    groups[k]->collect(items, offset, &local[k], static_cast<std::uint32_t>(k), groups, batch);
    offset += groups[k]->size();
  }
  const bool clip = max_norm >= 0;
  std::vector<StepStats> stats(want_stats ? groups.size() : 0);
  double norm = 0;
  bool applied = true;
  {
    py::gil_scoped_release nogil;
    if (clip || skip_nonfinite || want_norm) {
      bool nonfinite = false;
      norm = std::sqrt(grad_sumsq(batch.tensors.data(), batch.tensors.size(), &nonfinite));
      applied = !(skip_nonfinite && nonfinite);
      // torch.nn.utils.clip_grad_norm_: coef = max_norm / (norm + 1e-6), clamped to <= 1
      const double coef = max_norm / (norm + 1e-6);
      if (applied && clip && !(coef >= 1.0))
        for (Hyper& h : local) h.grad_scale = coef;
    }
    if (applied) {
      run_step(batch.tensors.data(), batch.hypers.data(), batch.tensors.size(),
               want_stats ? stats.data() : nullptr, groups.size());
      for (std::int64_t* c : batch.counters) ++*c;
    }
  }
  py::object norm_obj = (clip || skip_nonfinite || want_norm) ? py::object(py::float_(norm)) : py::object(py::none());
  const int status = !applied ? kSkipped : (batch.counters.empty() ? kNothing : kApplied);
  py::object stats_obj = py::none();
  if (want_stats && applied) {
    py::list per_group;
    for (const StepStats& st : stats)
      per_group.append(py::make_tuple(st.grad_sq, st.update_sq, st.lr_sum, st.lr_min, st.lr_max, st.count));
    stats_obj = per_group;
  }
  return py::make_tuple(norm_obj, status, stats_obj);
}

std::vector<std::string> available_isas() {
  std::vector<std::string> out;
  for (int i = 0; i < kNumIsas; ++i)
    if (isa_supported(static_cast<Isa>(i))) out.emplace_back(isa_name(static_cast<Isa>(i)));
  return out;
}

std::string isa_list() {
  std::string s;
  for (const std::string& name : available_isas()) s += (s.empty() ? "" : ", ") + name;
  return s;
}

void set_isa(const std::string& name) {
  Isa isa;
  if (!isa_from_name(name.c_str(), &isa))
    throw py::value_error("unknown ISA '" + name + "' (expected one of: scalar, avx2, avx512)");
  if (!isa_supported(isa))
    throw std::runtime_error("ISA '" + name + "' is not supported by this CPU/OS (available: " + isa_list() + ")");
  set_active_isa(isa);
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "adaptopt native core: fused SIMD/OpenMP optimizer kernels";
  m.attr("__version__") = ADAPTOPT_VERSION;

  const char* bad = nullptr;
  bool unknown = false;
  if (!apply_isa_env(&bad, &unknown)) {
    if (unknown)
      throw py::value_error(std::string("ADAPTOPT_ISA: unknown ISA '") + bad +
                            "' (expected one of: scalar, avx2, avx512)");
    throw py::import_error(std::string("ADAPTOPT_ISA: ISA '") + bad + "' is not supported by this CPU/OS (available: " +
                           isa_list() + ")");
  }

  m.def("isa", [] { return std::string(isa_name(active_isa())); }, "Name of the active kernel ISA.");
  m.def("available_isas", &available_isas, "ISAs usable on this CPU and OS, lowest first.");
  m.def("set_isa", &set_isa, py::arg("name"), "Select the kernel ISA (must be in available_isas()).");
  m.def("get_num_threads", &get_num_threads);
  m.def("set_num_threads", [](int n) {
    if (n < 1) throw py::value_error("set_num_threads: n must be >= 1, got " + std::to_string(n));
    set_num_threads(n);
  }, py::arg("n"));
  m.def("parallel_threshold", &parallel_threshold);
  m.def("set_parallel_threshold", [](std::size_t e) { set_parallel_threshold(e); }, py::arg("elements"));

  py::class_<Hyper>(m, "Hyper")
      .def(py::init([](int algo, double lr, double a, double b, double eps, double wd, double momentum,
                       unsigned flags) {
             if (algo < 0 || algo >= kNumAlgos) throw py::value_error("unknown algorithm id");
             Hyper h;
             h.algo = static_cast<Algo>(algo);
             h.lr = lr;
             h.a = a;
             h.b = b;
             h.eps = eps;
             h.weight_decay = wd;
             h.momentum = momentum;
             h.flags = flags;
             return h;
           }),
           py::arg("algo"), py::arg("lr"), py::arg("a"), py::arg("b"), py::arg("eps"), py::arg("weight_decay"),
           py::arg("momentum"), py::arg("flags"))
      .def_readonly("lr", &Hyper::lr);

  py::class_<Group>(m, "Group")
      .def(py::init<int, py::list, py::list, py::array, std::string, std::size_t, std::vector<std::string>>(),
           py::arg("algo"), py::arg("params"), py::arg("states"), py::arg("steps"), py::arg("param_label"),
           py::arg("first_index"), py::arg("slot_labels"))
      .def("__len__", &Group::size);

  m.def("multi_step", &multi_step, py::arg("groups"), py::arg("hypers"), py::arg("grads"),
        py::arg("max_norm") = -1.0, py::arg("skip_nonfinite") = false, py::arg("want_norm") = false,
        py::arg("want_stats") = false,
        "Validate every gradient, then update every group in one parallel region with the GIL released.\n"
        "max_norm >= 0 clips by the global gradient norm. Returns (norm or None, status, stats or\n"
        "None): status 0 = no gradient given, 1 = applied, 2 = skipped because a gradient was not\n"
        "finite; stats per group = (sum g^2, sum du^2, sum lr_eff, min lr_eff, max lr_eff, count).");

  m.def("find_overlap", [](py::list arrays) -> std::optional<std::pair<std::size_t, std::size_t>> {
    std::vector<Interval> iv;
    static const std::string kArrays = "arrays";
    for (std::size_t i = 0; i < arrays.size(); ++i) {
      const View v = check_array(arrays[i], Name{kArrays, i}, false);
      iv.push_back(interval_of(v, std::to_string(i)));
    }
    auto [a, b] = sort_and_find_overlap(iv);
    if (a == nullptr) return std::nullopt;
    const std::size_t i = std::stoul(a->label), j = std::stoul(b->label);
    return std::make_pair(std::min(i, j), std::max(i, j));
  }, py::arg("arrays"), "Indices (i, j) of two arrays whose memory overlaps, or None.");
}
