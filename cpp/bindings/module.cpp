// pybind11 module `adaptopt._core`: buffer checks (each message names the argument), raw
// pointer extraction, and the GIL released around the kernels. Arrays are never converted or
// copied: a buffer of the wrong kind is an error, because a silent copy would lose the update.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
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
  std::string str() const { return prefix + "[" + std::to_string(index) + "]"; }
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
  }
  return false;
}

// The parameters of one param group with their state buffers and step counters. Holds
// references to every array so the raw pointers stay valid.
class Group {
 public:
  Group(int algo, py::list params, py::list states, py::array steps, std::string param_label,
        std::size_t first_index, std::vector<std::string> slot_labels)
      : algo_(static_cast<Algo>(algo)), param_label_(std::move(param_label)), first_index_(first_index) {
    if (algo < 0 || algo >= kNumAlgos) throw py::value_error("unknown algorithm id");
    const std::size_t np = params.size();
    const int nslots = slots_of(algo_);
    if (states.size() != np)
      throw py::value_error("state: expected one entry per parameter (" + std::to_string(np) + "), got " +
                            std::to_string(states.size()));
    if (static_cast<int>(slot_labels.size()) != nslots) throw py::value_error("slot_labels: wrong length");
    View sv = check_steps(steps, np);
    steps_ = static_cast<std::int64_t*>(sv.data);
    refs_.reserve(np * (nslots + 1) + 1);
    refs_.push_back(steps);
    tensors_.resize(np);
    std::vector<Interval> written;
    for (std::size_t i = 0; i < np; ++i) {
      const std::string pl = label(i);
      py::handle p = params[i];
      const View pv = check_array(p, Name{param_label_, first_index + i}, true);
      refs_.push_back(py::reinterpret_borrow<py::object>(p));
      shapes_.push_back(py::reinterpret_borrow<py::object>(p));
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
        const Name bn{slot_labels[s], first_index + i};
        const std::string bl = bn.str();
        const View bv = check_array(b, bn, true, static_cast<int>(pv.dtype));
        if (!same_shape(b, p))
          throw py::value_error(bl + ": shape " + fmt_shape(py::detail::array_proxy(b.ptr())) +
                                " does not match the parameter's shape " +
                                fmt_shape(py::detail::array_proxy(p.ptr())));
        refs_.push_back(py::reinterpret_borrow<py::object>(b));
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

  // Validates grads[offset + i] for every tensor; appends the tensors to step. Raises before
  // anything is written.
  void collect(PyObject* const* grads, std::size_t offset, const Hyper* h,
               const std::vector<const Group*>& all, std::vector<TensorRef>& out,
               std::vector<const Hyper*>& hyp, std::vector<std::int64_t*>& counters) const {
    for (std::size_t i = 0; i < tensors_.size(); ++i) {
      py::handle g(grads[offset + i]);
      if (g.is_none()) continue;  // torch semantics: a parameter without a gradient is skipped
      static const std::string kGrads = "grads";
      const Name gn{kGrads, offset + i};
      const TensorRef& t = tensors_[i];
      for (int s = 0; s < kMaxSlots; ++s)
        if (slot_needed(*h, s) && t.s[s] == nullptr)
          throw py::value_error("state of " + label(i) + " lacks a buffer these hyperparameters need");
      const View gv = check_array(g, gn, false, static_cast<int>(t.dtype));
      if (!same_shape(g, shapes_[i]))
        throw py::value_error(gn.str() + ": shape " + fmt_shape(py::detail::array_proxy(g.ptr())) +
                              " does not match the parameter's shape " +
                              fmt_shape(py::detail::array_proxy(shapes_[i].ptr())));
      const auto lo = reinterpret_cast<std::uintptr_t>(gv.data);
      const auto hi = lo + gv.n * elem_bytes(gv.dtype);
      for (const Group* other : all)
        if (const Interval* o = find_overlap(other->written(), lo, hi))
          throw py::value_error(gn.str() + " overlaps " + o->label + " in memory (a gradient must not share " +
                                "memory with a buffer the step writes)");
      TensorRef r = t;
      r.g = gv.data;
      // Tensors of a group usually share their step number: reuse the scalars (pow is slow).
      if (!out.empty() && hyp.back() == h && *counters.back() == steps_[i]) {
        r.c0 = out.back().c0;
        r.c1 = out.back().c1;
      } else {
        fill_step_scalars(r, *h, steps_[i] + 1);
      }
      out.push_back(r);
      hyp.push_back(h);
      counters.push_back(&steps_[i]);
    }
  }

 private:
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
  std::int64_t* steps_ = nullptr;
  std::vector<TensorRef> tensors_;
  std::vector<py::object> shapes_;  // the params, for shape checks of the grads
  std::vector<py::object> refs_;
  std::vector<Interval> written_;
};

// One step of every group: validates every gradient of every group first, then runs all
// tensors in one parallel region without the GIL, then advances the step counters.
void multi_step(const std::vector<const Group*>& groups, const std::vector<const Hyper*>& hypers,
                py::object grads) {
  if (groups.size() != hypers.size()) throw py::value_error("one Hyper per group expected");
  py::object seq = py::reinterpret_steal<py::object>(PySequence_Fast(grads.ptr(), "grads: expected a sequence of arrays"));
  if (!seq) throw py::error_already_set();
  const std::size_t ng = static_cast<std::size_t>(PySequence_Fast_GET_SIZE(seq.ptr()));
  PyObject* const* items = PySequence_Fast_ITEMS(seq.ptr());
  std::size_t expected = 0;
  for (const Group* g : groups) expected += g->size();
  if (ng != expected)
    throw py::value_error("grads: expected " + std::to_string(expected) + " arrays (one per parameter, " +
                          "in parameter order), got " + std::to_string(ng));
  for (std::size_t k = 0; k < groups.size(); ++k) {
    if (groups[k] == nullptr || hypers[k] == nullptr) throw py::type_error("None group or hyper");
    groups[k]->check_hyper(*hypers[k]);
  }
  std::vector<TensorRef> tensors;
  std::vector<const Hyper*> hyp;
  std::vector<std::int64_t*> counters;
  tensors.reserve(ng);
  hyp.reserve(ng);
  counters.reserve(ng);
  std::size_t offset = 0;
  for (std::size_t k = 0; k < groups.size(); ++k) {
    groups[k]->collect(items, offset, hypers[k], groups, tensors, hyp, counters);
    offset += groups[k]->size();
  }
  py::gil_scoped_release nogil;
  run_step(tensors.data(), hyp.data(), tensors.size());
  for (std::int64_t* c : counters) ++*c;
}

py::list available_isas() {
  py::list out;
  for (int i = 0; i < kNumIsas; ++i)
    if (isa_supported(static_cast<Isa>(i))) out.append(isa_name(static_cast<Isa>(i)));
  return out;
}

void set_isa(const std::string& name) {
  Isa isa;
  if (!isa_from_name(name.c_str(), &isa))
    throw py::value_error("unknown ISA '" + name + "' (expected one of: scalar, avx2, avx512)");
  if (!isa_supported(isa))
    throw std::runtime_error("ISA '" + name + "' is not supported by this CPU/OS (available: " +
                             std::string(py::str(available_isas())) + ")");
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
                           std::string(py::str(available_isas())) + ")");
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
        "Validate every gradient, then update every group in one parallel region with the GIL released.");

  m.def("find_overlap", [](py::list arrays) -> py::object {
    std::vector<Interval> iv;
    static const std::string kArrays = "arrays";
    for (std::size_t i = 0; i < arrays.size(); ++i) {
      const View v = check_array(arrays[i], Name{kArrays, i}, false);
      iv.push_back(interval_of(v, std::to_string(i)));
    }
    auto [a, b] = sort_and_find_overlap(iv);
    if (a == nullptr) return py::none();
    const auto i = std::stoul(a->label), j = std::stoul(b->label);
    return py::make_tuple(std::min(i, j), std::max(i, j));
  }, py::arg("arrays"), "Indices (i, j) of two arrays whose memory overlaps, or None.");
}
