// All kernels for one ISA; CMake gives only this file the ISA's compiler flags.
#define AO_ISA_NS isa_avx2
#define AO_ISA_NAME "avx2"
#include "kernels/kernels.inl"

const adaptopt::KernelTable& adaptopt::kernel_table_avx2() { return isa_avx2::table(); }
