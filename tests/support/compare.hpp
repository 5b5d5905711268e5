#pragma once
// Element-wise closeness with a report of the worst element, for Catch2.
#include <algorithm>
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

// |actual - expected| <= abs_tol + rel_tol * |expected| for every element.
template <class A, class E>
closeness compare(const A* actual, const E* expected, std::size_t n, double rel_tol,
                  double abs_tol) {
  closeness result;
  double worst_excess = -1;
  for (std::size_t i = 0; i < n; ++i) {
    const double a = static_cast<double>(actual[i]), e = static_cast<double>(expected[i]);
    const double err = std::abs(a - e), bound = abs_tol + rel_tol * std::abs(e);
    const bool bad = !(err <= bound);  // NaN fails
    const double excess = std::isnan(err) ? 1e300 : err / bound;
    if (excess > worst_excess) {
      worst_excess = excess;
      std::ostringstream out;
      out << "element " << i << ": actual " << a << ", expected " << e << ", error " << err
          << ", bound " << bound;
      result.worst = out.str();
    }
    if (bad) result.ok = false;
  }
  return result;
}

template <class A, class E>
closeness compare(const std::vector<A>& actual, const std::vector<E>& expected, double rel_tol,
                  double abs_tol) {
  if (actual.size() != expected.size())
    return {false, "sizes differ: " + std::to_string(actual.size()) + " vs " +
                       std::to_string(expected.size())};
  return compare(actual.data(), expected.data(), actual.size(), rel_tol, abs_tol);
}

}  // namespace reuseformer_test

// CHECK_CLOSE(result_of_compare): fails with the worst element in the message.
#define CHECK_CLOSE(expr)            \
  do {                               \
    const auto check_close_ = (expr); \
    INFO(check_close_.worst);        \
    CHECK(check_close_.ok);          \
  } while (0)
