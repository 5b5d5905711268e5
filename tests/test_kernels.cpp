// Every SIMD kernel against its scalar reference, in whichever SIMD build this
// file is compiled for; and the references against double-precision formulas.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <utility>
#include <vector>

#include <reuseformer/core/workspace.hpp>
#include <reuseformer/gemm/gemm.hpp>
#include <reuseformer/gemm/packed_weights.hpp>
#include <reuseformer/gemm/triangular.hpp>
#include <reuseformer/simd/activation.hpp>
#include <reuseformer/simd/layer_norm.hpp>
#include <reuseformer/simd/softmax.hpp>
#include <reuseformer/simd/transpose.hpp>

#include "support/catch.hpp"
#include "support/compare.hpp"
#include "support/product_reference.hpp"
#include "support/random.hpp"

namespace rf = reuseformer;
namespace simd = reuseformer::simd;
using reuseformer_test::compare;
using reuseformer_test::compare_within;
using reuseformer_test::random_vector;
using reuseformer_test::reference_product;

namespace {

// Sizes around every vector width in play (SSE 4/2, AVX 8/4, AVX-512 16/8
// lanes): empty bodies, exact multiples, and tails of every length.
const std::vector<rf::index_t> sizes = {1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 257};

// Vector and scalar paths differ only in summation order and in the libm-style
// exp/erf/tanh implementations (xsimd vs the C library), each within a few ulp:
// a few hundred ulp of headroom for rows of up to 257 terms.
template <class T>
constexpr double kernel_tolerance = std::is_same_v<T, float> ? 2e-6 : 1e-14;

}  // namespace

TEMPLATE_TEST_CASE("softmax: vector path equals the scalar reference", "[kernels][softmax]", float, double) {
  using T = TestType;
  const T inf = std::numeric_limits<T>::infinity();
  for (const rf::index_t n : sizes) {
    for (const rf::index_t active : {n, (n + 1) / 2}) {
      for (const bool with_mask : {false, true}) {
        CAPTURE(n, active, with_mask);
        std::vector<T> x = random_vector<T>(static_cast<std::size_t>(n), static_cast<std::uint64_t>(n), -8, 8);
        std::vector<T> mask(static_cast<std::size_t>(n), T(0));
        for (rf::index_t j = 0; j < n; j += 3) mask[j] = -inf;  // every third key hidden
        const T* m = with_mask ? mask.data() : nullptr;
        std::vector<T> expected = x;
        simd::reference::softmax(expected.data(), n, active, T(0.125), m);
        simd::softmax<T>(x.data(), n, active, T(0.125), m);
        CHECK_CLOSE(compare(x, expected, kernel_tolerance<T>, kernel_tolerance<T>));
        // Probabilities of the active, visible keys sum to one; the tail is zero.
        const T sum = std::accumulate(x.begin(), x.end(), T(0));
        const bool any_visible = !with_mask || active > 1;
        CHECK(std::abs(sum - (any_visible ? T(1) : T(0))) <= T(100) * std::numeric_limits<T>::epsilon());
        for (rf::index_t j = active; j < n; ++j) CHECK(x[j] == T(0));
      }
    }
  }
}

TEMPLATE_TEST_CASE("softmax: reference equals the double-precision formula", "[kernels][softmax]", float, double) {
  using T = TestType;
  const rf::index_t n = 37;
  std::vector<T> x = random_vector<T>(n, 5, -4, 4);
  std::vector<double> expected(n);
  double top = -1e300, sum = 0;
  for (rf::index_t j = 0; j < n; ++j) top = std::max(top, 0.5 * double(x[j]));
  for (rf::index_t j = 0; j < n; ++j) sum += expected[j] = std::exp(0.5 * double(x[j]) - top);
  for (double& e : expected) e /= sum;
  simd::reference::softmax(x.data(), n, n, T(0.5), static_cast<const T*>(nullptr));
  CHECK_CLOSE(compare(x, expected, 10 * kernel_tolerance<T>, 0));
}

TEMPLATE_TEST_CASE("softmax: masked rows and extreme logits", "[kernels][softmax]", float, double) {
  using T = TestType;
  const T inf = std::numeric_limits<T>::infinity();
  for (const rf::index_t n : {rf::index_t(1), rf::index_t(17), rf::index_t(64)}) {
    CAPTURE(n);
    SECTION("a fully masked row is all zeros, never NaN") {
      std::vector<T> x = random_vector<T>(n, 1), mask(n, -inf);
      simd::softmax<T>(x.data(), n, n, T(1), mask.data());
      for (const T v : x) CHECK(v == T(0));
    }
    SECTION("no active key is all zeros") {
      std::vector<T> x = random_vector<T>(n, 2);
      simd::softmax<T>(x.data(), n, 0, T(1), static_cast<const T*>(nullptr));
      for (const T v : x) CHECK(v == T(0));
    }
    SECTION("logits of +-1e4 stay finite and put all mass on the largest") {
      std::vector<T> x(n, T(-1e4));
      x[n / 2] = T(1e4);
      simd::softmax<T>(x.data(), n, n, T(1), static_cast<const T*>(nullptr));
      for (rf::index_t j = 0; j < n; ++j) CHECK(x[j] == (j == n / 2 ? T(1) : T(0)));
    }
  }
}

TEMPLATE_TEST_CASE("layer_norm: vector path equals the scalar reference", "[kernels][layer_norm]", float, double) {
  using T = TestType;
  for (const rf::index_t n : sizes) {
    CAPTURE(n);
    const std::vector<T> x = random_vector<T>(n, 10 + n, -3, 5);
    const std::vector<T> gamma = random_vector<T>(n, 20 + n, 0.5, 1.5), beta = random_vector<T>(n, 30 + n);
    std::vector<T> expected(n), actual(n);
    simd::reference::layer_norm(x.data(), expected.data(), n, gamma.data(), beta.data(), T(1e-5));
    simd::layer_norm<T>(x.data(), actual.data(), n, gamma.data(), beta.data(), T(1e-5));
    // LayerNorm divides by the row's standard deviation, which amplifies the
    // rounding of the mean by up to ~|x|/std: a little more headroom than elsewhere.
    CHECK_CLOSE(compare(actual, expected, 4 * kernel_tolerance<T>, 4 * kernel_tolerance<T>));
  }
}

TEMPLATE_TEST_CASE("layer_norm: in place, large mean, against double precision", "[kernels][layer_norm]", float,
                   double) {
  using T = TestType;
  const rf::index_t n = 768;
  // A mean of 1000 and a spread of 1: E[x^2] - E[x]^2 would lose ~6 digits here.
  std::vector<T> x = random_vector<T>(n, 3, 999, 1001);
  const std::vector<T> gamma(n, T(1)), beta(n, T(0));
  std::vector<double> expected(n);
  double mean = 0, var = 0;
  for (const T v : x) mean += double(v);
  mean /= n;
  for (const T v : x) var += (double(v) - mean) * (double(v) - mean);
  var /= n;
  for (rf::index_t j = 0; j < n; ++j) expected[j] = (double(x[j]) - mean) / std::sqrt(var + 1e-12);
  simd::layer_norm<T>(x.data(), x.data(), n, gamma.data(), beta.data(), T(1e-12));
  // float: inputs near 1000 carry absolute rounding 6e-5 = 2e-4 standard deviations.
  CHECK_CLOSE(compare(x, expected, std::is_same_v<T, float> ? 2e-4 : 1e-11, std::is_same_v<T, float> ? 2e-4 : 1e-11));
}

namespace {
template <class Act, class T>
void check_bias_activation(double (*exact)(double)) {
  for (const rf::index_t cols : sizes) {
    CAPTURE(cols);
    const rf::index_t rows = 3, ld = cols + 5;  // a row stride wider than the row
    const std::vector<T> input = random_vector<T>(rows * ld, 40 + cols, -6, 6);
    const std::vector<T> bias = random_vector<T>(cols, 50 + cols);
    std::vector<T> expected = input, actual = input;
    simd::reference::bias_activation<Act>(expected.data(), rows, cols, ld, bias.data());
    simd::bias_activation<Act, T>(actual.data(), rows, cols, ld, bias.data());
    // GELU at x ~ -5 computes x * (1 + erf(x/sqrt2)) with 1 + erf ~ 1e-6: the
    // cancellation turns a 1-ulp difference in erf into an absolute difference of
    // a few ulp of |x| (<= 7 here), so the absolute bound scales with the inputs.
    CHECK_CLOSE(compare(actual, expected, kernel_tolerance<T>, 10 * kernel_tolerance<T>));
    std::vector<double> formula(input.begin(), input.end());
    for (rf::index_t i = 0; i < rows; ++i)
      for (rf::index_t j = 0; j < cols; ++j) formula[i * ld + j] = exact(double(input[i * ld + j]) + double(bias[j]));
    // The reference itself against the double formula (input+bias rounds once in T).
    CHECK_CLOSE(compare(expected, formula, 10 * kernel_tolerance<T>, 10 * kernel_tolerance<T>));
  }
}
}  // namespace

TEMPLATE_TEST_CASE("bias_activation: every activation, vector equals reference", "[kernels][activation]", float,
                   double) {
  using T = TestType;
  SECTION("identity (bias add)") {
    check_bias_activation<simd::identity, T>([](double x) { return x; });
  }
  SECTION("relu") {
    check_bias_activation<simd::relu, T>([](double x) { return x > 0 ? x : 0; });
  }
  SECTION("gelu (erf)") {
    check_bias_activation<simd::gelu_erf, T>([](double x) { return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0))); });
  }
  SECTION("gelu (tanh)") {
    check_bias_activation<simd::gelu_tanh, T>(
        [](double x) { return 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x))); });
  }
}

TEMPLATE_TEST_CASE("gemm: products of every shape against a double loop", "[kernels][gemm]", float, double) {
  using T = TestType;
  // Sizes straddle the register tile (MR up to 12 rows, NR up to 32 columns),
  // the column panel (512) and the depth block (384 float, 192 double); the
  // last strip is full, two thirds full (20 = 12 + 8: its own tile) or less,
  // and A is read in place (n <= 2 NR) or packed.
  for (const rf::index_t m : {1, 3, 8, 20, 70}) {
    for (const rf::index_t n : {1, 5, 33, 130, 600}) {
      for (const rf::index_t k : {1, 8, 65, 400}) {
        for (const auto op : {rf::gemm::transpose::no, rf::gemm::transpose::yes}) {
          for (const auto mode : {rf::gemm::update::overwrite, rf::gemm::update::accumulate})
            for (const int threads : {1, 2}) {
              const bool overwrite = mode == rf::gemm::update::overwrite;
              CAPTURE(m, n, k, op == rf::gemm::transpose::yes, overwrite, threads);
              // Strided operands: each matrix sits inside a wider buffer.
              const rf::index_t lda = k + 3, ldb = (op == rf::gemm::transpose::yes ? k : n) + 2, ldc = n + 1;
              const rf::index_t b_rows = op == rf::gemm::transpose::yes ? n : k;
              const std::vector<T> a = random_vector<T>(m * lda, 1), b = random_vector<T>(b_rows * ldb, 2);
              std::vector<T> c = random_vector<T>(m * ldc, 3);
              std::vector<double> expected(c.begin(), c.end()),
                  bound(c.size(), 0.0);  // the stride padding keeps its values
              for (rf::index_t i = 0; i < m; ++i)
                for (rf::index_t j = 0; j < n; ++j) {
                  const auto element = reference_product<T>(
                      k, rf::gemm::detail::depth_block<T>(k), 0.5, c[i * ldc + j], !overwrite, [&](rf::index_t p) {
                        return std::pair<double, double>(
                            a[i * lda + p], op == rf::gemm::transpose::yes ? b[j * ldb + p] : b[p * ldb + j]);
                      });
                  expected[i * ldc + j] = element.value;
                  bound[i * ldc + j] = element.bound;
                }
              const rf::index_t stride = rf::gemm::scratch_elements<T>(m, n, k);
              const rf::index_t padded = (stride + 15) / 16 * 16;
              rf::workspace ws(static_cast<std::size_t>(padded * threads) * sizeof(T), threads);
              rf::arena arena = ws.make_arena();
              rf::gemm::parallel_multiply_add<T>(
                  T(0.5), {a.data(), m, k, lda}, {b.data(), b_rows, op == rf::gemm::transpose::yes ? k : n, ldb}, op,
                  {c.data(), m, n, ldc}, mode, {arena.take<T>(padded * threads), padded, threads});
              CHECK_CLOSE(compare_within(c, expected, bound));
            }
        }
      }
    }
  }
}

TEMPLATE_TEST_CASE("gemm: a prepacked weight gives the packing product's result, bit for bit", "[kernels][gemm]", float,
                   double) {
  using T = TestType;
  // The weight [n, k] is packed from two stacked blocks (as query | value are),
  // split at `cut` rows: the strips that straddle the cut, and the padded last
  // strip, are read like any other.
  for (const rf::index_t m : {1, 17, 70}) {
    for (const rf::index_t n : {1, 5, 33, 130, 600}) {
      for (const rf::index_t k : {1, 65, 400}) {
        for (const auto mode : {rf::gemm::update::overwrite, rf::gemm::update::accumulate})
          for (const int threads : {1, 2}) {
            CAPTURE(m, n, k, mode == rf::gemm::update::overwrite, threads);
            const rf::index_t lda = k + 3, ldb = k + 2, ldc = n + 1, cut = n / 3;
            const std::vector<T> a = random_vector<T>(m * lda, 1), b = random_vector<T>(n * ldb, 2);
            const std::vector<T> c0 = random_vector<T>(m * ldc, 3);
            const std::vector<rf::gemm::matrix<const T>> parts = {{b.data(), cut, k, ldb},
                                                                  {b.data() + cut * ldb, n - cut, k, ldb}};
            const rf::gemm::packed_weights<T> packed(parts, k);
            CHECK(packed.out_features() == n);
            CHECK(packed.bytes() == static_cast<std::size_t>(rf::ceil_div(n, packed.nr) * packed.nr * k) * sizeof(T));

            const rf::index_t stride = rf::round_to_line<T>(rf::gemm::scratch_elements<T>(m, n, k));
            CHECK(rf::gemm::prepacked_scratch_elements<T>(k) <= stride);
            rf::workspace ws(static_cast<std::size_t>(stride * threads) * sizeof(T), threads);
            rf::arena arena = ws.make_arena();
            T* const scratch = arena.take<T>(stride * threads);
            std::vector<T> unpacked = c0, prepacked = c0;
            rf::gemm::parallel_multiply_add<T>(T(0.5), {a.data(), m, k, lda}, {b.data(), n, k, ldb},
                                               rf::gemm::transpose::yes, {unpacked.data(), m, n, ldc}, mode,
                                               {scratch, stride, threads});
            rf::gemm::parallel_multiply_add<T>(T(0.5), {a.data(), m, k, lda}, packed.view(),
                                               {prepacked.data(), m, n, ldc}, mode, {scratch, stride, threads});
            CHECK(prepacked == unpacked);
            std::vector<double> expected(c0.begin(), c0.end()), bound(c0.size(), 0.0);
            for (rf::index_t i = 0; i < m; ++i)
              for (rf::index_t j = 0; j < n; ++j) {
                const auto element = reference_product<T>(
                    k, rf::gemm::detail::depth_block<T>(k), 0.5, c0[i * ldc + j], mode == rf::gemm::update::accumulate,
                    [&](rf::index_t p) { return std::pair<double, double>(a[i * lda + p], b[j * ldb + p]); });
                expected[i * ldc + j] = element.value;
                bound[i * ldc + j] = element.bound;
              }
            CHECK_CLOSE(compare_within(prepacked, expected, bound));
          }
      }
    }
  }
}

TEMPLATE_TEST_CASE("gemm: an operand packed once serves products on fewer columns, bit for bit", "[kernels][gemm]",
                   float, double) {
  using T = TestType;
  // op(B) [k, n] packed whole (an attention head's keys, transpose::yes, or
  // values, transpose::no), then read by products on its first `used` columns
  // (a causal block sees fewer keys): each equals the product that packs.
  for (const auto op : {rf::gemm::transpose::no, rf::gemm::transpose::yes}) {
    for (const rf::index_t n : {1, 5, 33, 130, 600}) {
      for (const rf::index_t k : {1, 65, 400}) {
        for (const rf::index_t used : {n, (n + 1) / 2}) {
          const rf::index_t m = 17, lda = k + 3, ldc = n + 1;
          const bool transposed = op == rf::gemm::transpose::yes;
          const rf::index_t b_rows = transposed ? n : k, ldb = (transposed ? k : n) + 2;
          CAPTURE(transposed, n, k, used);
          const std::vector<T> a = random_vector<T>(m * lda, 1), b = random_vector<T>(b_rows * ldb, 2);
          std::vector<T> packed_b(static_cast<std::size_t>(rf::gemm::packed_elements<T>(n, k)) + 64);
          T* const aligned =
              packed_b.data() + (64 - reinterpret_cast<std::uintptr_t>(packed_b.data()) % 64) % 64 / sizeof(T);
          const rf::gemm::matrix<const T> b_view{b.data(), b_rows, transposed ? k : n, ldb};
          const rf::gemm::packed_view<T> view = rf::gemm::pack<T>(b_view, op, aligned);

          const rf::index_t stride = rf::round_to_line<T>(rf::gemm::scratch_elements<T>(m, n, k));
          CHECK(rf::gemm::prepacked_scratch_elements<T>(k) <= stride);
          rf::workspace ws(static_cast<std::size_t>(stride) * sizeof(T), 1);
          rf::arena arena = ws.make_arena();
          T* const scratch = arena.take<T>(stride);
          std::vector<T> packing(static_cast<std::size_t>(m * ldc), T(-1)), prepacked = packing;
          const rf::gemm::matrix<const T> used_b =
              transposed ? b_view.block(0, used, 0, k) : b_view.block(0, k, 0, used);
          rf::gemm::multiply_add<T>(T(1), {a.data(), m, k, lda}, used_b, op, {packing.data(), m, used, ldc},
                                    rf::gemm::update::overwrite, scratch);
          rf::gemm::multiply_add<T>(T(1), {a.data(), m, k, lda}, view, {prepacked.data(), m, used, ldc},
                                    rf::gemm::update::overwrite, scratch);
          CHECK(prepacked == packing);
        }
      }
    }
  }
}

TEST_CASE("gemm: epilogues see every block once, after it is final", "[kernels][gemm]") {
  // A block epilogue records how often each element was handed over and checks
  // it holds its final value then; a rows epilogue the same for whole rows. The
  // shapes split along rows and along columns on 2 threads (rows epilogues then
  // run after the product), cross column panels, and stay on one thread.
  for (const auto& [m, n, k] : std::vector<std::array<rf::index_t, 3>>{
           {1, 5, 3}, {70, 33, 65}, {200, 600, 70}, {600, 130, 400}, {40, 1100, 64}}) {
    for (const int threads : {1, 2}) {
      CAPTURE(m, n, k, threads);
      const std::vector<float> a = random_vector<float>(m * k, 4), b = random_vector<float>(n * k, 5);
      const rf::gemm::packed_weights<float> packed(std::vector<rf::gemm::matrix<const float>>{{b.data(), n, k, k}}, k);
      const rf::index_t stride = rf::round_to_line<float>(rf::gemm::prepacked_scratch_elements<float>(k));
      rf::workspace ws(static_cast<std::size_t>(stride * threads) * sizeof(float), threads);
      rf::arena arena = ws.make_arena();
      float* const scratch = arena.take<float>(stride * threads);
      std::vector<float> expected(static_cast<std::size_t>(m * n), 0.f);
      rf::gemm::parallel_multiply_add<float>(1.f, {a.data(), m, k, k}, packed.view(), {expected.data(), m, n, n},
                                             rf::gemm::update::overwrite, {scratch, stride, 1});

      // Each element (row) is touched by one thread only: per-element counts need no lock.
      std::vector<float> c(expected.size(), 0.f);
      std::vector<int> seen(expected.size(), 0), early(expected.size(), 0);
      const auto on_block = [&](rf::index_t row, rf::index_t rows, rf::index_t col, rf::index_t cols) {
        for (rf::index_t i = row; i < row + rows; ++i)
          for (rf::index_t j = col; j < col + cols; ++j) {
            const auto at = static_cast<std::size_t>(i * n + j);
            ++seen[at];
            early[at] += c[at] != expected[at];
          }
      };
      rf::gemm::parallel_multiply_add<float>(1.f, {a.data(), m, k, k}, packed.view(), {c.data(), m, n, n},
                                             rf::gemm::update::overwrite, {scratch, stride, threads}, on_block);
      CHECK(std::all_of(seen.begin(), seen.end(), [](int s) { return s == 1; }));
      CHECK(std::all_of(early.begin(), early.end(), [](int e) { return e == 0; }));

      std::fill(c.begin(), c.end(), 0.f);
      std::vector<int> rows_seen(static_cast<std::size_t>(m), 0), rows_early(static_cast<std::size_t>(m), 0);
      const auto on_rows = [&](rf::index_t row, rf::index_t rows) {
        for (rf::index_t i = row; i < row + rows; ++i) {
          ++rows_seen[static_cast<std::size_t>(i)];
          rows_early[static_cast<std::size_t>(i)] +=
              !std::equal(c.begin() + i * n, c.begin() + (i + 1) * n, expected.begin() + i * n);
        }
      };
      rf::gemm::parallel_multiply_add<float>(1.f, {a.data(), m, k, k}, packed.view(), {c.data(), m, n, n},
                                             rf::gemm::update::overwrite, {scratch, stride, threads},
                                             rf::gemm::rows_epilogue<decltype(on_rows)>{on_rows});
      CHECK(std::all_of(rows_seen.begin(), rows_seen.end(), [](int s) { return s == 1; }));
      CHECK(std::all_of(rows_early.begin(), rows_early.end(), [](int e) { return e == 0; }));
    }
  }
}

TEMPLATE_TEST_CASE("gemm: lower-triangular and symmetric products against a double loop", "[kernels][gemm]", float,
                   double) {
  using T = TestType;
  // n crosses the register tile and the 512-column panel; k the depth block.
  // B is either another matrix or A itself, the view the products recognise as
  // A Aᵀ and serve from one packed panel.
  for (const rf::index_t n : {1, 11, 13, 48, 70, 97, 600})
    for (const rf::index_t k : {1, 64, 400})
      for (const bool self : {false, true}) {
        CAPTURE(n, k, self);
        const rf::index_t lda = k + 1, ldc = n + 3;
        const std::vector<T> a = random_vector<T>(n * lda, 4), other = random_vector<T>(n * lda, 5);
        const std::vector<T>& b = self ? a : other;
        const auto product = [&](rf::index_t i, rf::index_t j) {
          return reference_product<T>(k, rf::gemm::detail::depth_block<T>(k), 2, 0, false, [&](rf::index_t p) {
            return std::pair<double, double>(a[i * lda + p], b[j * lda + p]);
          });
        };
        const rf::index_t elements = rf::gemm::lower_scratch_elements<T>(n, k);
        rf::workspace ws(static_cast<std::size_t>(elements) * sizeof(T), 1);
        rf::arena arena = ws.make_arena();
        T* const scratch = arena.take<T>(elements);
        const rf::gemm::matrix<const T> a_view{a.data(), n, k, lda}, b_view{b.data(), n, k, lda};

        // Lower: the triangle, everything above it (and the stride padding) untouched.
        std::vector<T> c = random_vector<T>(n * ldc, 6);
        std::vector<double> expected(c.begin(), c.end()), bound(c.size(), 0.0);  // untouched: exactly
        const auto expect = [&](rf::index_t at, reuseformer_test::reference_element element) {
          expected[at] = element.value;
          bound[at] = element.bound;
        };
        for (rf::index_t i = 0; i < n; ++i)
          for (rf::index_t j = 0; j <= i; ++j) expect(i * ldc + j, product(i, j));
        rf::gemm::multiply_lower<T>(T(2), a_view, b_view, {c.data(), n, n, ldc}, scratch);
        CHECK_CLOSE(compare_within(c, expected, bound));

        // Symmetric: the lower triangle, mirrored exactly (for A Aᵀ that is the
        // full product); the stride padding untouched.
        c = random_vector<T>(n * ldc, 7);
        expected.assign(c.begin(), c.end());
        std::fill(bound.begin(), bound.end(), 0.0);
        for (rf::index_t i = 0; i < n; ++i)
          for (rf::index_t j = 0; j < n; ++j) expect(i * ldc + j, product(std::max(i, j), std::min(i, j)));
        rf::gemm::multiply_symmetric<T>(T(2), a_view, b_view, {c.data(), n, n, ldc}, scratch);
        CHECK_CLOSE(compare_within(c, expected, bound));
        bool symmetric = true;
        for (rf::index_t i = 0; i < n; ++i)
          for (rf::index_t j = 0; j < i; ++j) symmetric = symmetric && c[i * ldc + j] == c[j * ldc + i];
        CHECK(symmetric);

        // Reading A's strips from B's panel changes no sum's order: A Aᵀ equals,
        // bit for bit, A times a copy of A (which packs A separately). Bit for
        // bit needs an exact alpha: strips of 8 and 12 rows send some elements
        // through differently rounded stores (fma(acc, alpha, c) or a buffer).
        CHECK(rf::gemm::detail::is_self_product(a_view, b_view) == self);
        if (self) {
          const std::vector<T> copy = a;
          std::vector<T> separate = random_vector<T>(n * ldc, 7);
          rf::gemm::multiply_symmetric<T>(T(2), a_view, {copy.data(), n, k, lda}, {separate.data(), n, n, ldc},
                                          scratch);
          const bool identical = separate == c;  // (a failed CHECK on the vectors would print them)
          CHECK(identical);
        }
      }
}

TEST_CASE("gemm: a product is A Aᵀ only for the very same view of A", "[kernels][gemm]") {
  const std::vector<float> a(64, 1.f);
  const rf::gemm::matrix<const float> view{a.data(), 4, 8, 16};
  CHECK(rf::gemm::detail::is_self_product(view, view));
  CHECK(rf::gemm::detail::is_self_product(view.block(0, 3, 0, 8), view));        // C's rows a prefix of its columns
  CHECK_FALSE(rf::gemm::detail::is_self_product(view, view.block(0, 3, 0, 8)));  // rows of A beyond B's
  CHECK_FALSE(rf::gemm::detail::is_self_product(view, {a.data(), 4, 8, 8}));     // same data, another stride
  CHECK_FALSE(rf::gemm::detail::is_self_product(view, view.block(1, 3, 0, 8)));  // B starts a row later
}

TEST_CASE("gemm: overwrite replaces the destination", "[kernels][gemm]") {
  const std::vector<float> a = {1, 2, 3, 4}, b = {5, 6, 7, 8};  // A [2,2], B [2,2]
  std::vector<float> c(4, 1000.f);
  const rf::index_t elements = rf::gemm::scratch_elements<float>(2, 2, 2);
  rf::workspace ws(static_cast<std::size_t>(elements) * sizeof(float), 1);
  rf::arena arena = ws.make_arena();
  rf::gemm::multiply_add<float>(1.f, {a.data(), 2, 2, 2}, {b.data(), 2, 2, 2}, rf::gemm::transpose::no,
                                {c.data(), 2, 2, 2}, rf::gemm::update::overwrite, arena.take<float>(elements));
  CHECK(c == std::vector<float>{19, 22, 43, 50});
  // An empty inner dimension: overwrite gives zeros, accumulate leaves C as it was.
  rf::gemm::multiply_add<float>(1.f, {a.data(), 2, 0, 2}, {b.data(), 0, 2, 2}, rf::gemm::transpose::no,
                                {c.data(), 2, 2, 2}, rf::gemm::update::accumulate, nullptr);
  CHECK(c == std::vector<float>{19, 22, 43, 50});
  rf::gemm::multiply_add<float>(1.f, {a.data(), 2, 0, 2}, {b.data(), 0, 2, 2}, rf::gemm::transpose::no,
                                {c.data(), 2, 2, 2}, rf::gemm::update::overwrite, nullptr);
  CHECK(c == std::vector<float>{0, 0, 0, 0});
}

TEST_CASE("transpose: float moves register tiles in every vector build", "[kernels][transpose]") {
  // The packing of every product goes through it: element by element costs
  // about a cycle per value, several percent of a weight product.
  constexpr rf::index_t tile = simd::transpose_tile<float, simd::default_arch>;
  if constexpr (!simd::is_vector_arch<simd::default_arch>)
    CHECK(tile == 0);
  else
    CHECK(tile == (XSIMD_WITH_AVX ? 8 : 4));
  CHECK(simd::transpose_tile<double, simd::default_arch> == 0);
}

TEMPLATE_TEST_CASE("transpose and mirror: register tiles equal the element loop, bit for bit", "[kernels][transpose]",
                   float, double) {
  using T = TestType;
  for (const rf::index_t rows : {1, 3, 4, 8, 9, 12, 13, 17, 33})
    for (const rf::index_t cols : {1, 4, 5, 8, 12, 16, 23}) {
      CAPTURE(rows, cols);
      const rf::index_t src_ld = cols + 3, dst_ld = rows + 5;  // strides wider than the block
      const std::vector<T> src = random_vector<T>(static_cast<std::size_t>(rows * src_ld), 11);
      std::vector<T> fast(static_cast<std::size_t>(cols * dst_ld), T(-9)), slow = fast;
      simd::transpose<T, simd::default_arch>(src.data(), src_ld, fast.data(), dst_ld, rows, cols);
      simd::reference::transpose(src.data(), src_ld, slow.data(), dst_ld, rows, cols);
      CHECK(fast == slow);  // padding beyond the block untouched in both
    }
  for (const rf::index_t n : {1, 7, 16, 31, 64, 70}) {
    CAPTURE(n);
    const rf::index_t ld = n + 16;
    std::vector<T> c = random_vector<T>(static_cast<std::size_t>(n * ld), 12);
    const std::vector<T> original = c;
    simd::mirror_lower<T, simd::default_arch>(c.data(), n, ld);
    bool mirrored = true;  // the lower triangle and the stride padding unchanged, the upper its mirror
    for (rf::index_t i = 0; i < n; ++i)
      for (rf::index_t j = 0; j < ld; ++j)
        mirrored = mirrored && c[i * ld + j] == (j > i && j < n ? original[j * ld + i] : original[i * ld + j]);
    CHECK(mirrored);
  }
}

TEST_CASE("toolchain: integer initializer lists survive AVX-512 auto-vectorisation", "[toolchain]") {
  // GCC 12.2 at -O2 -mavx512f stores this list as eight ones unless 512-bit
  // auto-vectorisation is off (CMakeLists.txt adds -mprefer-vector-width=256);
  // the attention-mask tests below build their masks the same way.
  const std::vector<std::int64_t> mask = {1, 1, 1, 0, 0, 0, 0, 0};
  CHECK(mask == std::vector<std::int64_t>{1, 1, 1, 0, 0, 0, 0, 0});
  CHECK(std::count(mask.begin(), mask.end(), std::int64_t(0)) == 5);
}

TEST_CASE("gemm: a copied packed weight owns equal values", "[kernels][gemm]") {
  const std::vector<float> w = random_vector<float>(40 * 7, 9);
  const rf::gemm::packed_weights<float> packed(std::vector<rf::gemm::matrix<const float>>{{w.data(), 40, 7, 7}}, 7);
  rf::gemm::packed_weights<float> copy = packed;
  REQUIRE(copy.bytes() == packed.bytes());
  CHECK(copy.view().data != packed.view().data);
  CHECK(std::equal(copy.view().data, copy.view().data + copy.bytes() / sizeof(float), packed.view().data));
  rf::gemm::packed_weights<float> assigned;
  assigned = copy;
  CHECK(std::equal(assigned.view().data, assigned.view().data + assigned.bytes() / sizeof(float), packed.view().data));
}
