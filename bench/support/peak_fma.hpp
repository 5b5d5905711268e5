#pragma once
// The machine's fp32 FMA throughput on one core, measured, so that "% of peak"
// figures are honest on whatever machine runs the benchmarks (a nominal figure
// would need the clock, which turbo and sharing change).
//
// The kernel keeps 16 independent accumulators in vector registers (enough to
// cover the FMA latency on every x86 core) and does nothing but FMAs on them.
// Through the library: it includes xsimd with the GCC 12 warning workaround.
#include <reuseformer/simd/arch.hpp>

#include <algorithm>
#include <chrono>

namespace reuseformer_bench {

namespace detail {
// A few microseconds of FMAs; returns a value that depends on every one of them.
template <class Arch>
[[gnu::noinline]] float fma_block(long iterations, float seed) {
  using V = xsimd::batch<float, Arch>;
  constexpr int chains = 16;
  V acc[chains];
  for (int i = 0; i < chains; ++i) acc[i] = V(seed * static_cast<float>(i + 1));
  const V a(0.999999f), b(1e-7f);
  for (long it = 0; it < iterations; ++it) {
#pragma GCC unroll 16
    for (int i = 0; i < chains; ++i) acc[i] = xsimd::fma(acc[i], a, b);
  }
  V sum = acc[0];
  for (int i = 1; i < chains; ++i) sum += acc[i];
  return xsimd::hadd(sum);
}
}  // namespace detail

// GFLOP/s (2 flops per lane per FMA) of one thread, best of a few short runs
// (~0.2 s in all), measured once per process.
inline double peak_gflops_per_core() {
  static const double peak = [] {
    using Arch = xsimd::default_arch;
    constexpr long iterations = 2'000'000;
    constexpr double flops = 2.0 * 16 * xsimd::batch<float, Arch>::size * iterations;
    double best = 0;
    volatile float sink = 0;
    for (int run = 0; run < 5; ++run) {
      const auto start = std::chrono::steady_clock::now();
      sink = sink + detail::fma_block<Arch>(iterations, 1e-3f);
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      best = std::max(best, flops / seconds / 1e9);
    }
    return best;
  }();
  return peak;
}

}  // namespace reuseformer_bench
