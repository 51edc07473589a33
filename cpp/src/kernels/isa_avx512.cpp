// All kernels for one ISA; CMake gives only this file the ISA's compiler flags.
#define AO_ISA_NS isa_avx512
#define AO_ISA_NAME "avx512"
#include "kernels/kernels.inl"

const adaptopt::KernelTable& adaptopt::kernel_table_avx512() { return isa_avx512::table(); }
