#pragma once
// The counters every suite reports for a timed operation of known work:
// GFLOP/s (2 flops per multiply-add, per iteration) and the percentage of the
// machine's peak measured on the same number of threads (peak_fma.hpp; for
// bf16 products the vdpbf16ps peak, peak_bf16.hpp, where the build has it).
#include <benchmark/benchmark.h>

#include "peak_bf16.hpp"
#include "peak_fma.hpp"

namespace reuseformer_bench {

inline void add_rate_counters(benchmark::State& state, double multiply_adds, int threads, bool bf16 = false) {
  const double gflop = 2e-9 * multiply_adds;
  const double peak = bf16 && peak_bf16_gflops(threads) > 0 ? peak_bf16_gflops(threads) : peak_gflops(threads);
  state.counters["GFLOP/s"] = benchmark::Counter(gflop, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["%peak"] = benchmark::Counter(100 * gflop / peak, benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace reuseformer_bench
