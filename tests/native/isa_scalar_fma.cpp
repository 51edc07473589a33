// The reference of the native test driver: the kernels at width 1 (Scalar<T> for every element,
// as in isa_scalar.cpp) but with mul_add rounded once (AO_FUSED=1: __builtin_fma, which is libm's
// correctly rounded fma without FMA instructions), as the AVX2 and AVX-512 tables round it.
// Baseline flags: it runs on any x86-64. Test-only.
#define AO_FUSED 1
#define AO_ISA_NS isa_scalar_fma
#define AO_ISA_NAME "scalar-fma"
#include "kernels/kernels.inl"

#include "tables.h"

const adaptopt::KernelTable& adaptopt::test::kernel_table_scalar_fma() { return isa_scalar_fma::table(); }
