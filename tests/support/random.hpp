#pragma once
// Deterministic test data.
#include <cstdint>
#include <random>
#include <vector>

namespace reuseformer_test {

template <class T>
std::vector<T> random_vector(std::size_t n, std::uint64_t seed, double lo = -1, double hi = 1) {
  std::mt19937_64 bits(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<T> v(n);
  for (T& x : v) x = static_cast<T>(dist(bits));
  return v;
}

}  // namespace reuseformer_test
