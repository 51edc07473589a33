// Negative control: executes AVX2 + FMA unconditionally; must die with SIGILL without AVX2.
#include <immintrin.h>
#include <cstdio>
int main(int argc, char**) {
  __m256i a = _mm256_add_epi32(_mm256_set1_epi32(argc), _mm256_set1_epi32(argc));
  __m256d x = _mm256_fmadd_pd(_mm256_set1_pd(argc), _mm256_set1_pd(argc), _mm256_set1_pd(argc));
  std::printf("%d %g\n", _mm256_extract_epi32(a, 0), _mm256_cvtsd_f64(x));
}
