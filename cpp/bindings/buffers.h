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

// A checked buffer: then used through raw pointers.
struct View {
  void* data = nullptr;
  std::size_t n = 0;
  DType dtype = DType::F32;
};

// Names an argument in error messages ("grads[3]"); the string is built only on error.
struct Name {
  const std::string& prefix;
  std::size_t index;
  const char* suffix = "";
  std::string str() const { return prefix + "[" + std::to_string(index) + "]" + suffix; }
};

std::size_t elem_bytes(DType d);
const char* dtype_name(DType d);
std::string fmt_shape(py::handle arr);
bool same_shape(py::handle x, py::handle y);

// Checks that `obj` is an ndarray the kernels may use in place. want < 0: any supported float
// dtype; otherwise exactly that DType ("does not match the parameter's ...").
View check_array(py::handle obj, const Name& name, bool writeable, int want = -1);

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
