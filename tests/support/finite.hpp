#pragma once
// Whether every value of a vector is finite (no NaN, no infinity).
#include <algorithm>
#include <cmath>
#include <vector>

namespace reuseformer_test {

template <class T>
bool all_finite(const std::vector<T>& v) {
  return std::all_of(v.begin(), v.end(), [](T x) { return std::isfinite(x); });
}

}  // namespace reuseformer_test
