// All kernels for one ISA; CMake gives only this file the ISA's compiler flags.
#define AO_ISA_NS isa_scalar
#define AO_ISA_NAME "scalar"
#include "kernels/kernels.inl"

const adaptopt::KernelTable& adaptopt::kernel_table_scalar() { return isa_scalar::table(); }
