#pragma once
// The machine's int8 dot-product throughput (vpdpbusd, AVX512-VNNI), measured
// as peak_fma.hpp measures the fp32 FMA peak: independent accumulators in
// registers, nothing but dot products on them, on all the benchmark's threads
// at once. Each vpdpbusd lane does four multiply-adds: 8 operations. How many
// independent accumulators reach the full rate differs between cores, and
// more is not always better (a Zen 5 issues two vpdpbusd per cycle from 8 to
// 12 chains but one from 16), so the peak is the best of 8, 12 and 16 chains.
// 0 where the build does not enable AVX512-VNNI (the int8 products then run
// portable integer code: bench_kernels holds it to the fp32 FMA peak,
// peak_gflops(); reuseformer_compare shows no % peak for it).
#include <algorithm>

#include "peak_fma.hpp"

#if defined(__AVX512VNNI__)
#include <immintrin.h>
#endif

namespace reuseformer_bench {

namespace detail {
#if defined(__AVX512VNNI__)
template <int Chains>
[[gnu::noinline]] float int8_dot_block(long iterations, float seed) {
  __m512i acc[Chains];
  for (int i = 0; i < Chains; ++i) acc[i] = _mm512_set1_epi32(static_cast<int>(seed * 1000.0f) + i);
  const __m512i a = _mm512_set1_epi8(3), b = _mm512_set1_epi8(-2);
  for (long it = 0; it < iterations; ++it) {
#pragma GCC unroll 16
    for (int i = 0; i < Chains; ++i) acc[i] = _mm512_dpbusd_epi32(acc[i], a, b);
  }
  __m512i sum = acc[0];
  for (int i = 1; i < Chains; ++i) sum = _mm512_add_epi32(sum, acc[i]);
  return static_cast<float>(_mm512_reduce_add_epi32(sum));
}
#endif

// One measurement (the best of measure_block's runs), not cached: callers that
// re-measure after a long run (bench/compare.cpp) use it directly.
inline double measure_peak_int8(int threads) {
#if defined(__AVX512VNNI__)
  return std::max({measure_block(threads, 8.0 * 16 * 8, int8_dot_block<8>),
                   measure_block(threads, 8.0 * 16 * 12, int8_dot_block<12>),
                   measure_block(threads, 8.0 * 16 * 16, int8_dot_block<16>)});
#else
  (void)threads;
  return 0;
#endif
}
}  // namespace detail

// Peak int8 GOP/s of `threads` cores busy at once (8 operations per vpdpbusd
// lane), measured on first use for each thread count; 0 without AVX512-VNNI.
inline double peak_int8_gops(int threads) { return detail::measured_once<detail::measure_peak_int8>(threads); }

}  // namespace reuseformer_bench
