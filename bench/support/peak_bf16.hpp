#pragma once
// The machine's bfloat16 dot-product throughput (vdpbf16ps, AVX512-BF16),
// measured as peak_fma.hpp measures the fp32 FMA peak: 16 independent
// accumulators in registers, nothing but dot products on them, on all the
// benchmark's threads at once. Each vdpbf16ps lane does two multiply-adds: 4
// flops. 0 where the build does not enable AVX512-BF16 (the bf16 products then
// widen to fp32 FMAs, whose peak is peak_gflops()).
#include "peak_fma.hpp"

#if defined(__AVX512BF16__)
#include <immintrin.h>
#endif

namespace reuseformer_bench {

namespace detail {
#if defined(__AVX512BF16__)
[[gnu::noinline]] inline float bf16_dot_block(long iterations, float seed) {
  constexpr int chains = 16;
  __m512 acc[chains];
  for (int i = 0; i < chains; ++i) acc[i] = _mm512_set1_ps(seed * static_cast<float>(i + 1));
  const __m512bh a = _mm512_cvtne2ps_pbh(_mm512_set1_ps(0.5f), _mm512_set1_ps(0.5f));
  const __m512bh b = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-7f), _mm512_set1_ps(1e-7f));
  for (long it = 0; it < iterations; ++it) {
#pragma GCC unroll 16
    for (int i = 0; i < chains; ++i) acc[i] = _mm512_dpbf16_ps(acc[i], a, b);
  }
  __m512 sum = acc[0];
  for (int i = 1; i < chains; ++i) sum = _mm512_add_ps(sum, acc[i]);
  return _mm512_reduce_add_ps(sum);
}
#endif

// One measurement (the best of measure_block's runs), not cached: callers that
// re-measure after a long run (bench/compare.cpp) use it directly.
inline double measure_peak_bf16(int threads) {
#if defined(__AVX512BF16__)
  return measure_block(threads, 4.0 * 16 * 16, bf16_dot_block);
#else
  (void)threads;
  return 0;
#endif
}
}  // namespace detail

// Peak bf16 GFLOP/s of `threads` cores busy at once (4 flops per vdpbf16ps
// lane), measured on first use for each thread count; 0 without AVX512-BF16.
inline double peak_bf16_gflops(int threads) { return detail::measured_once<detail::measure_peak_bf16>(threads); }

}  // namespace reuseformer_bench
