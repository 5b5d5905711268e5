#pragma once
// The counters every suite reports for a timed operation of known work:
// GFLOP/s (2 flops per multiply-add, per iteration) and the percentage of the
// machine's peak measured on the same number of threads (peak_fma.hpp; for
// bf16 products the vdpbf16ps peak, peak_bf16.hpp, and for int8 products the
// vpdpbusd peak, peak_int8.hpp, where the build has them).
#include <benchmark/benchmark.h>

#include "peak_bf16.hpp"
#include "peak_fma.hpp"
#include "peak_int8.hpp"

namespace reuseformer_bench {

inline void add_rate_counters(benchmark::State& state, double multiply_adds, int threads, bool bf16 = false) {
  const double gflop = 2e-9 * multiply_adds;
  const double peak = bf16 && peak_bf16_gflops(threads) > 0 ? peak_bf16_gflops(threads) : peak_gflops(threads);
  state.counters["GFLOP/s"] = benchmark::Counter(gflop, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["%peak"] = benchmark::Counter(100 * gflop / peak, benchmark::Counter::kIsIterationInvariantRate);
}

// The same for int8 products: GOP/s (2 operations per multiply-add) and the
// percentage of the vpdpbusd peak (of the fp32 FMA peak without VNNI).
inline void add_int8_rate_counters(benchmark::State& state, double multiply_adds, int threads) {
  const double gop = 2e-9 * multiply_adds;
  const double peak = peak_int8_gops(threads) > 0 ? peak_int8_gops(threads) : peak_gflops(threads);
  state.counters["GOP/s"] = benchmark::Counter(gop, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["%peak"] = benchmark::Counter(100 * gop / peak, benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace reuseformer_bench
