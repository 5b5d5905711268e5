#pragma once
// One element of a matrix product, as the library's micro-kernels compute it,
// with the rounding error it may carry.
//
// The kernels (gemm/micro_kernel.hpp) sum c = alpha * sum_p a_p b_p (+ c0 when
// accumulating) over depth blocks of `block` steps: each block's products are
// accumulated from zero in order, one rounding per step (two where the scalar
// build does not fuse the multiply-add: the product, then the sum), and the
// block's sum is scaled by alpha and added to C, one or two more roundings.
// A rounding to T changes its result x by at most u|x| (u = 2^-24 for float,
// 2^-53 for double); an accumulator's rounding reaches C multiplied by |alpha|.
//
// Summed as worst cases these give the classical bound ~k u sum|terms|, about
// 50 times what a product of k = 400 uniform terms really carries. The bound
// here treats the rounding errors as independent with mean zero (the
// probabilistic model of rounding), so Hoeffding's inequality bounds their sum by
//   lambda * u * sqrt(sum over roundings r of (g_r x_r)^2)
// except with probability 2 exp(-lambda^2 / 2), g_r being 1 or |alpha| as
// above. lambda = 8 makes that 3e-14 per element, below 1e-7 over the few
// million elements a GEMM test case checks. The reference itself is summed in
// double-double (error-free products and sums: about 2^-100 relative, far
// below the bound in float or double, and quick on every target, where long
// double may be software quad precision) and rounded once to double, whose
// 2^-53 |c| is added. For k = 400 uniform [-1, 1] operands this allows about
// 2e-5 in float.
#include <cmath>
#include <limits>
#include <utility>

namespace reuseformer_test {

struct reference_element {
  double value;  // the exact element, to double precision
  double bound;  // the error a correct kernel in T stays within
};

// A sum held as the unevaluated pair hi + lo.
struct double_double {
  double hi = 0, lo = 0;
  void add(double x) {  // TwoSum: hi + lo gains x exactly
    const double s = hi + x, v = s - hi;
    lo += (hi - (s - v)) + (x - v);
    hi = s;
  }
  void add_product(double a, double b) {  // a b exactly: its rounding error is fma(a, b, -p)
    const double p = a * b;
    add(p);
    lo += std::fma(a, b, -p);
  }
  [[nodiscard]] double value() const { return hi + lo; }
};

// operands(p) returns the pair (a_p, b_p). Requires k >= 0, block >= 1.
template <class T, class Operands>
reference_element reference_product(long k, long block, double alpha, double c0, bool accumulate, Operands operands) {
  constexpr double lambda = 8;
  const double u = std::numeric_limits<T>::epsilon() / 2;
  double_double c;
  if (accumulate) c.add(c0);
  double variance = 0;
  for (long start = 0; start < k; start += block) {
    double_double sum;
    for (long p = start; p < k && p < start + block; ++p) {
      const auto [a, b] = operands(p);
      sum.add_product(a, b);
      const double t = a * b, partial = sum.value();
      variance += alpha * alpha * (t * t + partial * partial);
    }
    c.add_product(alpha, sum.hi);
    c.add_product(alpha, sum.lo);
    const double scaled = alpha * sum.value(), total = c.value();
    variance += scaled * scaled + total * total;
  }
  const double value = c.value();
  return {value, lambda * u * std::sqrt(variance) + std::numeric_limits<double>::epsilon() / 2 * std::abs(value)};
}

}  // namespace reuseformer_test
