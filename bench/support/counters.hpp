#pragma once
// The counters every suite reports for a timed operation of known work:
// GFLOP/s (2 flops per multiply-add, per iteration) and the percentage of the
// machine's peak measured on the same number of threads (peak_fma.hpp).
#include <benchmark/benchmark.h>

#include "peak_fma.hpp"

namespace reuseformer_bench {

inline void add_rate_counters(benchmark::State& state, double multiply_adds, int threads) {
  const double gflop = 2e-9 * multiply_adds;
  state.counters["GFLOP/s"] = benchmark::Counter(gflop, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["%peak"] = benchmark::Counter(100 * gflop / peak_gflops(threads),
                                               benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace reuseformer_bench
