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

int g_bf16 = -1;

// The Storage of an array's dtype, or -1.
int storage_kind(const py::detail::PyArrayDescr_Proxy* d) {
  if (d->type_num == g_bf16 && g_bf16 >= 0) return static_cast<int>(Storage::BF16);
  if (!native_order(d)) return -1;
  switch (d->type_num) {
    case npy::NPY_FLOAT_: return static_cast<int>(Storage::F32);
    case npy::NPY_DOUBLE_: return static_cast<int>(Storage::F64);
    case 23: return static_cast<int>(Storage::F16);  // NPY_HALF
    case npy::NPY_UBYTE_: return static_cast<int>(Storage::U8);
    default: return -1;
  }
}

View check_layout(py::handle obj, const Name& name, bool writeable, int kind) {
  auto* a = py::detail::array_proxy(obj.ptr());
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
  v.storage = static_cast<Storage>(kind);
  v.dtype = kind <= static_cast<int>(Storage::BF16) ? static_cast<DType>(kind) : DType::F32;
  return v;
}

void require_array(py::handle obj, const Name& name) {
  if (!py::isinstance<py::array>(obj))
    throw py::type_error(name.str() + ": expected a numpy.ndarray, got " +
                         std::string(py::str(py::type::handle_of(obj).attr("__name__"))));
}

}  // namespace

void set_bfloat16_type_num(int num) { g_bf16 = num; }

std::size_t storage_bytes(Storage s) {
  switch (s) {
    case Storage::F64: return 8;
    case Storage::F32: return 4;
    case Storage::U8: return 1;
    default: return 2;
  }
}

std::size_t elem_bytes(DType d) { return storage_bytes(storage_of(d)); }

const char* storage_name(Storage s) {
  static const char* const names[] = {"float32", "float64", "float16", "bfloat16", "uint8"};
  return names[static_cast<int>(s)];
}

const char* dtype_name(DType d) { return storage_name(storage_of(d)); }

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
  require_array(obj, name);
  auto* a = py::detail::array_proxy(obj.ptr());
  int kind = storage_kind(py::detail::array_descriptor_proxy(a->descr));
  if (kind > static_cast<int>(Storage::BF16)) kind = -1;
  if (want >= 0 && kind != want)
    throw py::type_error(name.str() + ": dtype " + dtype_str(obj) + " does not match the parameter's " +
                         dtype_name(static_cast<DType>(want)) + " (no implicit casts)");
  if (kind < 0)
    throw py::type_error(name.str() + ": dtype " + dtype_str(obj) +
                         " is not supported (expected float32, float64, float16 or bfloat16)");
  return check_layout(obj, name, writeable, kind);
}

View check_buffer(py::handle obj, const Name& name, Storage want, const std::string& why) {
  require_array(obj, name);
  auto* a = py::detail::array_proxy(obj.ptr());
  const int kind = storage_kind(py::detail::array_descriptor_proxy(a->descr));
  if (kind != static_cast<int>(want))
    throw py::type_error(name.str() + ": dtype " + dtype_str(obj) + " is not the " + storage_name(want) + " " + why);
  return check_layout(obj, name, true, kind);
}

Interval interval_of(const View& v, std::string label) {
  auto lo = reinterpret_cast<std::uintptr_t>(v.data);
  return {lo, lo + v.n * storage_bytes(v.storage), std::move(label)};
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
