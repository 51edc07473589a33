# Compiler flags of the kernel files, shared by the extension (CMakeLists.txt) and the native test
# driver (tests/native/), so the driver compiles the kernels exactly as the wheel does.
#
# -ffp-contract=off: only explicit mul_add becomes an FMA, so the vector body and the scalar tail
# of one ISA round identically (thread-count invariance). -fno-math-errno lets sqrt inline.
# No fast-math flags ever: they break NaN/Inf propagation.
set(ADAPTOPT_KERNEL_OPTIONS -O3 -ffp-contract=off -fno-math-errno)
# The only ISA flags anywhere, each for its own file (.ci/wheel/static_isa.py checks this).
# F16C (half-precision conversions) came with AVX2 on every x86 CPU; the 16-bit kernels use it.
set(ADAPTOPT_AVX2_FLAGS -mavx2 -mfma -mf16c)
set(ADAPTOPT_AVX512_FLAGS -mavx512f -mavx2 -mfma -mf16c)
set(ADAPTOPT_NO_LTO -fno-lto)
