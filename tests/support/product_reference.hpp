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
// million elements a GEMM test case checks; the reference itself is summed in
// long double and stored as double, whose rounding (2^-53 |c|) is added.
// For k = 400 uniform [-1, 1] operands this allows about 2e-5 in float.
#include <cmath>
#include <limits>

namespace reuseformer_test {

struct reference_element {
  double value;  // the exact element, to double precision
  double bound;  // the error a correct kernel in T stays within
};

// term(p) returns a_p * b_p in long double (exact for float operands). Requires k >= 0, block >= 1.
template <class T, class Term>
reference_element reference_product(long k, long block, double alpha, double c0, bool accumulate, Term term) {
  constexpr long double lambda = 8;
  const long double u = std::numeric_limits<T>::epsilon() / 2, a = alpha;
  long double c = accumulate ? c0 : 0, variance = 0;
  for (long start = 0; start < k; start += block) {
    long double sum = 0;
    for (long p = start; p < k && p < start + block; ++p) {
      const long double t = term(p);
      sum += t;
      variance += a * a * (t * t + sum * sum);
    }
    c += a * sum;
    variance += a * a * sum * sum + c * c;
  }
  const double value = static_cast<double>(c);
  return {value, static_cast<double>(lambda * u * std::sqrt(variance)) +
                     std::numeric_limits<double>::epsilon() / 2 * std::abs(value)};
}

}  // namespace reuseformer_test
