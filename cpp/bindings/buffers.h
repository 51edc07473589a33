// Buffer checks for every array the kernels read or write: exact dtype, C-contiguous, aligned,
// writeable where written, no overlap between written buffers. Each message names the argument.
// Arrays are never converted or copied: a silent copy would lose the update.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "adaptopt/kernels.h"

namespace adaptopt::bindings {

namespace py = pybind11;

// What an array holds: a param dtype, or the uint8 codes of 8-bit state.
enum class Storage : int { F32 = 0, F64 = 1, F16 = 2, BF16 = 3, U8 = 4 };
const char* storage_name(Storage s);
inline Storage storage_of(DType d) { return static_cast<Storage>(static_cast<int>(d)); }

// A checked buffer: then used through raw pointers.
struct View {
  void* data = nullptr;
  std::size_t n = 0;
  DType dtype = DType::F32;  // for params and grads
  Storage storage = Storage::F32;
};

// Names an argument in error messages ("grads[3]"); the string is built only on error.
struct Name {
  const std::string& prefix;
  std::size_t index;
  const char* suffix = "";
  std::string str() const { return prefix + "[" + std::to_string(index) + "]" + suffix; }
};

std::size_t elem_bytes(DType d);
std::size_t storage_bytes(Storage s);
const char* dtype_name(DType d);
// The dtype NumPy gives ml_dtypes.bfloat16 (registered at import; -1: unknown).
void set_bfloat16_type_num(int num);
std::string fmt_shape(py::handle arr);
bool same_shape(py::handle x, py::handle y);

// Checks that `obj` is an ndarray the kernels may use in place. want < 0: any param dtype
// (float32, float64, float16, bfloat16); otherwise exactly that DType ("does not match the
// parameter's ...").
View check_array(py::handle obj, const Name& name, bool writeable, int want = -1);
// A state buffer: exactly storage `want`, for the reason `why` ("state_dtype='bfloat16'").
View check_buffer(py::handle obj, const Name& name, Storage want, const std::string& why);

// A byte range [lo, hi) of a buffer with the label used in error messages.
struct Interval {
  std::uintptr_t lo, hi;
  std::string label;
};
Interval interval_of(const View& v, std::string label);
// Drops empty ranges, sorts the rest and returns the first pair that shares a byte, if any.
std::pair<const Interval*, const Interval*> sort_and_find_overlap(std::vector<Interval>& iv);
// sort_and_find_overlap, raising ValueError on an overlap.
void sort_and_check_disjoint(std::vector<Interval>& iv);
// The sorted, disjoint interval that overlaps [lo, hi), or nullptr.
const Interval* find_overlap(const std::vector<Interval>& sorted, std::uintptr_t lo, std::uintptr_t hi);

}  // namespace adaptopt::bindings
