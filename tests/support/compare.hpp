#pragma once
// Element-wise closeness with a report of the worst element, for Catch2.
#include <cmath>
#include <cstddef>
#include <sstream>
#include <string>
#include <vector>

namespace reuseformer_test {

struct closeness {
  bool ok = true;
  std::string worst;  // description of the worst offender
};

// |actual[i] - expected[i]| <= bound(i, expected[i]) for every element i.
template <class A, class E, class Bound>
closeness compare_each(const A* actual, const E* expected, std::size_t n, Bound bound_of) {
  closeness result;
  double worst_excess = -1;
  for (std::size_t i = 0; i < n; ++i) {
    const double a = static_cast<double>(actual[i]), e = static_cast<double>(expected[i]);
    const double err = std::abs(a - e), bound = bound_of(i, e);
    const bool bad = !(err <= bound);  // NaN fails
    const double excess = std::isnan(err) ? 1e300 : bound > 0 ? err / bound : bad ? 1e300 : 0;
    if (excess > worst_excess) {
      worst_excess = excess;
      std::ostringstream out;
      out << "element " << i << ": actual " << a << ", expected " << e << ", error " << err << ", bound " << bound;
      result.worst = out.str();
    }
    if (bad) result.ok = false;
  }
  return result;
}

// |actual - expected| <= abs_tol + rel_tol * |expected| for every element.
template <class A, class E>
closeness compare(const A* actual, const E* expected, std::size_t n, double rel_tol, double abs_tol) {
  return compare_each(actual, expected, n, [&](std::size_t, double e) { return abs_tol + rel_tol * std::abs(e); });
}

template <class A, class E>
closeness compare(const std::vector<A>& actual, const std::vector<E>& expected, double rel_tol, double abs_tol) {
  if (actual.size() != expected.size())
    return {false, "sizes differ: " + std::to_string(actual.size()) + " vs " + std::to_string(expected.size())};
  return compare(actual.data(), expected.data(), actual.size(), rel_tol, abs_tol);
}

// |actual[i] - expected[i]| <= bounds[i]: bounds derived per element (e.g.
// support/product_reference.hpp).
template <class A>
closeness compare_within(const std::vector<A>& actual, const std::vector<double>& expected,
                         const std::vector<double>& bounds) {
  if (actual.size() != expected.size() || bounds.size() != expected.size())
    return {false, "sizes differ: " + std::to_string(actual.size()) + " vs " + std::to_string(expected.size()) +
                       " vs " + std::to_string(bounds.size()) + " bounds"};
  return compare_each(actual.data(), expected.data(), actual.size(), [&](std::size_t i, double) { return bounds[i]; });
}

}  // namespace reuseformer_test

// CHECK_CLOSE(result_of_compare): fails with the worst element in the message.
#define CHECK_CLOSE(expr)             \
  do {                                \
    const auto check_close_ = (expr); \
    INFO(check_close_.worst);         \
    CHECK(check_close_.ok);           \
  } while (0)
