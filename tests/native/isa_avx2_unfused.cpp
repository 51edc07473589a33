// The AVX2 kernels with mul_add as a multiply then an add, rounded twice (AO_FUSED=0), as the
// production scalar table (compiled without FMA) rounds it: the vector twin that the scalar
// table is compared with bit for bit. AVX2 flags. Test-only.
#define AO_FUSED 0
#define AO_ISA_NS isa_avx2_unfused
#define AO_ISA_NAME "avx2-unfused"
#include "kernels/kernels.inl"

#include "tables.h"

const adaptopt::KernelTable& adaptopt::test::kernel_table_avx2_unfused() { return isa_avx2_unfused::table(); }
