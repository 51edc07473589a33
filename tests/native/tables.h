// The kernel tables that only the native test driver builds (README.md).
#pragma once

#include "adaptopt/kernels.h"

namespace adaptopt::test {
// Width 1, mul_add fused: the bit-exact reference of the avx2 and avx512 tables. Any x86-64.
const KernelTable& kernel_table_scalar_fma();
// AVX2 with mul_add unfused: the bit-exact reference of the production scalar table. AVX2 + FMA.
const KernelTable& kernel_table_avx2_unfused();
// The AVX-512 kernels over SIMDe's AVX-512F emulation. AVX2 + FMA.
const KernelTable& kernel_table_avx512_simde();
// The SIMDe intrinsics that simde_avx512.h replaces, against the hardware's definition; false
// (and a message on stdout) when one differs. AVX2 + FMA.
bool simde_overrides_ok();
}  // namespace adaptopt::test
