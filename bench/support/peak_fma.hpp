#pragma once
// The machine's fp32 FMA throughput, measured, so that "% of peak" figures are
// honest on whatever machine runs the benchmarks: a nominal figure would need
// the clock, which turbo, the number of busy cores and sharing all change.
//
// The kernel keeps 16 independent accumulators in vector registers (enough to
// cover the FMA latency on every x86 core) and does nothing but FMAs on them.
// It runs on all the threads a benchmark uses at once, so the figure includes
// whatever frequency the cores hold when they are all busy.
// Through the library: it includes xsimd with the GCC 12 warning workaround.
#include <reuseformer/simd/arch.hpp>

#include <algorithm>
#include <chrono>
#include <time.h>  // clock_gettime, CLOCK_THREAD_CPUTIME_ID (POSIX)
#include <map>
#include <mutex>
#include <thread>
#include <vector>

namespace reuseformer_bench {

namespace detail {
// A few milliseconds of FMAs; returns a value that depends on every one of them.
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

// CPU seconds the calling thread has run for: time it spent waiting for a
// core is not counted.
inline double thread_cpu_seconds() {
  timespec now{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
  return static_cast<double>(now.tv_sec) + 1e-9 * static_cast<double>(now.tv_nsec);
}

// GFLOP/s of `threads` threads running block(iterations, seed) at once, each
// call doing flops_per_iteration flops per iteration: the best of 20 runs of
// ~10 ms, in 4 groups 100 ms apart. A virtual machine's cores are sometimes
// slowed for tens of milliseconds by work outside it; a peak measured in such
// a window would make every "% of peak" of the run too high. Noise can only
// lower a rate, so the best of runs spread out in time is the peak.
// Each thread's rate is its flops over its own CPU time, and the threads'
// rates add up: on a machine shared with other jobs a thread that waits for a
// core would otherwise count as slow arithmetic (timed on the wall clock, 2
// threads sharing 2 busy cores read about 1 core's peak), and "% of peak"
// would then rise when the machine is busy.
template <class Block>
double measure_block(int threads, double flops_per_iteration, Block block) {
  constexpr long iterations = 5'000'000;
  const double flops = flops_per_iteration * iterations;
  double best = 0;
  std::vector<float> sink(static_cast<std::size_t>(threads));
  std::vector<double> seconds(static_cast<std::size_t>(threads));
  const auto run_block = [&](int t) {
    const double start = thread_cpu_seconds();
    sink[static_cast<std::size_t>(t)] = block(iterations, 1e-3f);
    seconds[static_cast<std::size_t>(t)] = thread_cpu_seconds() - start;
  };
  constexpr int groups = 4, runs_per_group = 5;
  for (int run = 0; run < groups * runs_per_group; ++run) {
    if (run > 0 && run % runs_per_group == 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    std::vector<std::thread> workers;
    for (int t = 1; t < threads; ++t) workers.emplace_back(run_block, t);
    run_block(0);
    for (std::thread& w : workers) w.join();
    double gflops = 0;
    for (const double s : seconds) gflops += flops / s / 1e9;
    best = std::max(best, gflops);
  }
  volatile float keep = sink[0];  // the results are used: the loop cannot be elided
  (void)keep;
  return best;
}

inline double measure_peak(int threads) {
  using Arch = xsimd::default_arch;
  return measure_block(threads, 2.0 * 16 * xsimd::batch<float, Arch>::size, fma_block<Arch>);
}

// Measure(threads), measured on first use for each thread count (one cache per
// Measure): the peaks of a process are measured once, not by every benchmark.
template <double (*Measure)(int)>
double measured_once(int threads) {
  static std::mutex mutex;
  static std::map<int, double> measured;
  const std::lock_guard<std::mutex> lock(mutex);
  auto it = measured.find(threads);
  if (it == measured.end()) it = measured.emplace(threads, Measure(threads)).first;
  return it->second;
}
}  // namespace detail

// Peak fp32 GFLOP/s of `threads` cores busy at once (2 flops per FMA lane),
// measured on first use for each thread count.
inline double peak_gflops(int threads) { return detail::measured_once<detail::measure_peak>(threads); }

}  // namespace reuseformer_bench
