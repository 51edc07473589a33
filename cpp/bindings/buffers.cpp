#include "buffers.h"

#include <algorithm>

namespace adaptopt::bindings {
namespace {

using npy = py::detail::npy_api;

bool native_order(const py::detail::PyArrayDescr_Proxy* d) {
  const char bo = d->byteorder;
  return bo == '=' || bo == '|' ||
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
         bo == '<';
#else
         bo == '>';
#endif
}

std::string dtype_str(py::handle arr) { return py::str(arr.attr("dtype")).cast<std::string>(); }

}  // namespace

std::size_t elem_bytes(DType d) { return d == DType::F32 ? 4 : 8; }

const char* dtype_name(DType d) { return d == DType::F32 ? "float32" : "float64"; }

std::string fmt_shape(py::handle arr) {
  const auto* a = py::detail::array_proxy(arr.ptr());
  std::string s = "(";
  for (int d = 0; d < a->nd; ++d) {
    s += std::to_string(a->dimensions[d]);
    if (a->nd == 1 || d + 1 < a->nd) s += ",";
    if (d + 1 < a->nd) s += " ";
  }
  return s + ")";
}

bool same_shape(py::handle x, py::handle y) {
  const auto* a = py::detail::array_proxy(x.ptr());
  const auto* b = py::detail::array_proxy(y.ptr());
  if (a->nd != b->nd) return false;
  for (int i = 0; i < a->nd; ++i)
    if (a->dimensions[i] != b->dimensions[i]) return false;
  return true;
}

View check_array(py::handle obj, const Name& name, bool writeable, int want) {
  if (!py::isinstance<py::array>(obj))
    throw py::type_error(name.str() + ": expected a numpy.ndarray, got " +
                         std::string(py::str(py::type::handle_of(obj).attr("__name__"))));
  auto* a = py::detail::array_proxy(obj.ptr());
  auto* d = py::detail::array_descriptor_proxy(a->descr);
  int kind = -1;
  if (native_order(d)) {
    if (d->type_num == npy::NPY_FLOAT_) kind = static_cast<int>(DType::F32);
    else if (d->type_num == npy::NPY_DOUBLE_) kind = static_cast<int>(DType::F64);
  }
  if (want >= 0 && kind != want)
    throw py::type_error(name.str() + ": dtype " + dtype_str(obj) + " does not match the parameter's " +
                         dtype_name(static_cast<DType>(want)) + " (no implicit casts)");
  if (kind < 0)
    throw py::type_error(name.str() + ": dtype " + dtype_str(obj) + " is not supported (expected float32 or float64)");
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
  v.dtype = static_cast<DType>(kind);
  return v;
}

Interval interval_of(const View& v, std::string label) {
  auto lo = reinterpret_cast<std::uintptr_t>(v.data);
  return {lo, lo + v.n * elem_bytes(v.dtype), std::move(label)};
}

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

const Interval* find_overlap(const std::vector<Interval>& sorted, std::uintptr_t lo, std::uintptr_t hi) {
  if (lo == hi) return nullptr;
  auto it = std::upper_bound(sorted.begin(), sorted.end(), lo,
                             [](std::uintptr_t x, const Interval& y) { return x < y.lo; });
  if (it != sorted.end() && it->lo < hi) return &*it;
  if (it != sorted.begin() && std::prev(it)->hi > lo) return &*std::prev(it);
  return nullptr;
}

}  // namespace adaptopt::bindings
