// Numerics at the extremes, as behaviour specifications (native build):
// - extreme logits (|logit| from ~1e4 up to ~1e30 in float and ~1e150 in
//   double): the softmax subtracts the row maximum, so probabilities stay
//   finite, sum to 1 and equal the double reference; one dominant logit gives
//   an exactly one-hot row, tied maxima share the row evenly;
// - fully masked rows: a sequence whose attention_mask is all 0, and under a
//   causal mask the queries before a left-padded sequence's first token, get
//   zero probability rows and a zero context (the attention output is the
//   output bias), never NaN;
// - NaN/Inf in hidden_states propagate within their own sequence but never
//   reach another sequence of the batch: attention is per sequence, LayerNorm
//   per row and the GEMMs never mix rows, so the other sequence's outputs and
//   probabilities equal a clean run's bit for bit.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <span>
#include <vector>

#include <reuseformer/reuseformer.hpp>

#include "support/catch.hpp"
#include "support/compare.hpp"
#include "support/finite.hpp"
#include "support/random.hpp"
#include "support/reference.hpp"

namespace rf = reuseformer;
using reuseformer_test::all_finite;
using reuseformer_test::compare;
using reuseformer_test::random_vector;
using reuseformer_test::reference::tolerance;

namespace {

// Row `row` of a [rows, width] matrix has a non-finite element.
template <class T>
bool row_non_finite(const std::vector<T>& m, rf::index_t row, rf::index_t width) {
  for (rf::index_t c = 0; c < width; ++c)
    if (!std::isfinite(m[static_cast<std::size_t>(row * width + c)])) return true;
  return false;
}

// Attention weights owned by the test, [d, d] projections.
template <class T>
struct owned_attention {
  rf::index_t d;
  std::vector<T> query_w, query_b, key_w, key_b, value_w, value_b, output_w, output_b;

  [[nodiscard]] rf::attention_weights<T> view(bool with_key) const {
    const auto lin = [&](const std::vector<T>& w, const std::vector<T>& b) {
      return rf::linear_weights<T>{{w.data(), {d, d}}, {b.data(), {d}}};
    };
    return {lin(query_w, query_b),
            with_key ? lin(key_w, key_b) : rf::linear_weights<T>{},
            lin(value_w, value_b),
            lin(output_w, output_b),
            {},
            {}};
  }
};

// Input layouts for the extreme-logit attention below.
enum class layout {
  offset,    // leading component 1 for every token: logits = +-c^2/2 + moderate differences
  dominant,  // leading component n + 1: one key dominates every row by >= c^2/2
  ties,      // leading component 1 or 2: the keys with 2 lead by >= c^2/2 and, once c^2
             // absorbs the other components (c = 2^50), tie exactly
};

struct extreme_result {
  std::size_t one_hot_rows = 0;  // rows whose reference is one-hot
};

// Attention with d = 8, H = 2 heads of dh = 4 (scale 1/2, exact), whose
// logits are exact in T: integer inputs, power-of-two projection weights.
// Head h's query/key scale the head's leading component by c (head 1's query
// by -c with standard scores, so its logits are hugely negative), the other
// components by 1, so
//   logit_ij = (+-c^2 x_i0 x_j0 + sum_{t=1..3} x_it x_jt) / 2
// with x_i0 from `lay` and x_it random integers in [-3, 3].
// Checks probabilities and outputs against the double reference.
template <class T, rf::score_function Score>
extreme_result check_extreme_logits(T c, layout lay, bool causal) {
  constexpr rf::index_t d = 8, heads = 2, batch = 2, seq = 23;
  constexpr bool with_key = rf::has_key_projection(Score);
  owned_attention<T> w{d, {}, {}, {}, {}, {}, {}, {}, {}};
  w.query_w.assign(d * d, T(0));
  w.key_w.assign(d * d, T(0));
  for (rf::index_t i = 0; i < d; ++i) {
    const bool leading = i % 4 == 0;
    w.query_w[static_cast<std::size_t>(i * d + i)] = leading ? (with_key && i == 4 ? -c : c) : T(1);
    w.key_w[static_cast<std::size_t>(i * d + i)] = leading ? c : T(1);
  }
  w.query_b.assign(d, T(0));
  w.key_b.assign(d, T(0));
  w.value_w = random_vector<T>(d * d, 11, -0.5, 0.5);
  w.value_b = random_vector<T>(d, 12, -0.5, 0.5);
  w.output_w = random_vector<T>(d * d, 13, -0.5, 0.5);
  w.output_b = random_vector<T>(d, 14, -0.5, 0.5);
  const rf::attention_weights<T> weights = w.view(with_key);
  const rf::multi_head_attention<T, Score> attention(
      weights, {.hidden_size = d, .num_attention_heads = heads, .causal = causal});

  std::mt19937_64 bits(99);
  std::uniform_int_distribution<int> small(-3, 3);
  std::vector<T> x(static_cast<std::size_t>(batch * seq * d));
  for (rf::index_t r = 0; r < batch * seq; ++r) {
    const rf::index_t n = r % seq;
    for (rf::index_t i = 0; i < d; ++i) {
      T v = T(small(bits));
      if (i % 4 == 0) v = lay == layout::offset ? T(1) : lay == layout::dominant ? T(n + 1) : T(1 + n % 2);
      x[static_cast<std::size_t>(r * d + i)] = v;
    }
  }
  // Sequence 1 has 3 padding tokens at the end.
  std::vector<int> mask(static_cast<std::size_t>(batch * seq), 1);
  for (rf::index_t n = seq - 3; n < seq; ++n) mask[static_cast<std::size_t>(seq + n)] = 0;

  std::vector<T> y(x.size()), stack(static_cast<std::size_t>(batch * heads * seq * seq));
  const rf::tensor_view<T, 4> stack_view(stack.data(), {batch, heads, seq, seq});
  auto ws = attention.make_workspace(batch, seq);
  attention.forward(
      rf::tensor_view<const T, 3>(x.data(), {batch, seq, d}), rf::tensor_view<T, 3>(y.data(), {batch, seq, d}), ws,
      rf::tensor_view<const int, 2>(mask.data(), {batch, seq}), {.attentions = std::span(&stack_view, 1)});

  const auto expected = reuseformer_test::reference::attention(std::vector<double>(x.begin(), x.end()), batch, seq,
                                                               heads, weights, mask, causal);
  CHECK(all_finite(stack));
  CHECK(all_finite(y));
  CHECK_CLOSE(compare(stack, expected.stack, tolerance<T>, tolerance<T>));
  CHECK_CLOSE(compare(y, expected.output, tolerance<T>, tolerance<T>));

  extreme_result result;
  const double sum_tolerance = 4.0 * seq * std::numeric_limits<T>::epsilon();
  for (rf::index_t b = 0; b < batch; ++b)
    for (rf::index_t h = 0; h < heads; ++h)
      for (rf::index_t i = 0; i < seq; ++i) {
        const std::size_t row = static_cast<std::size_t>(((b * heads + h) * seq + i) * seq);
        CAPTURE(b, h, i);
        double sum = 0;
        for (rf::index_t j = 0; j < seq; ++j) {
          sum += double(stack[row + j]);
          const bool visible = mask[static_cast<std::size_t>(b * seq + j)] == 1 && (!causal || j <= i);
          if (!visible && stack[row + j] != T(0))
            FAIL_CHECK("hidden key " << j << " of row " << i << " has probability " << stack[row + j]);
        }
        CHECK(std::abs(sum - 1.0) <= sum_tolerance);
        // A reference row that is exactly one-hot must be exactly one-hot here.
        const auto top = std::max_element(expected.stack.begin() + static_cast<std::ptrdiff_t>(row),
                                          expected.stack.begin() + static_cast<std::ptrdiff_t>(row + seq));
        if (*top == 1.0) {
          ++result.one_hot_rows;
          const std::size_t at = static_cast<std::size_t>(top - expected.stack.begin());
          for (std::size_t j = row; j < row + static_cast<std::size_t>(seq); ++j)
            if (stack[j] != (j == at ? T(1) : T(0))) {
              FAIL_CHECK("row is not one-hot: key " << (j - row) << " has " << stack[j]);
              break;
            }
        }
      }
  return result;
}

// Softmax computed in double from the same inputs, subtracting the maximum.
template <class T>
std::vector<double> softmax_double(const std::vector<T>& x, rf::index_t active, double scale,
                                   const std::vector<T>& mask) {
  std::vector<double> z(x.size(), 0.0);
  double top = -std::numeric_limits<double>::infinity();
  for (rf::index_t j = 0; j < active; ++j) {
    z[j] = double(x[j]) * scale + (mask.empty() ? 0.0 : double(mask[j]));
    top = std::max(top, z[j]);
  }
  if (top == -std::numeric_limits<double>::infinity()) return std::vector<double>(x.size(), 0.0);
  double sum = 0;
  for (rf::index_t j = 0; j < active; ++j) sum += std::exp(z[j] - top);
  for (rf::index_t j = 0; j < active; ++j) z[j] = std::exp(z[j] - top) / sum;
  for (std::size_t j = static_cast<std::size_t>(active); j < z.size(); ++j) z[j] = 0;
  return z;
}

}  // namespace

TEMPLATE_TEST_CASE("the softmax kernel stays finite for extreme logits", "[numerics][softmax]", float, double) {
  using T = TestType;
  constexpr T big = std::numeric_limits<T>::max(), lowest = std::numeric_limits<T>::lowest();
  constexpr T inf = std::numeric_limits<T>::infinity();
  const rf::index_t n = 37;  // a vector body and a scalar tail in every SIMD build
  const rf::index_t top_at = GENERATE(as<rf::index_t>{}, 0, 5, 35);  // the maximum in the body or in the tail
  CAPTURE(top_at);

  const auto both = [&](std::vector<T> x, rf::index_t active, T scale, const std::vector<T>& mask) {
    const std::vector<double> expected = softmax_double(x, active, double(scale), mask);
    std::vector<T> vectorised = x, scalar = x;
    rf::simd::softmax<T>(vectorised.data(), n, active, scale, mask.empty() ? nullptr : mask.data());
    rf::simd::reference::softmax(scalar.data(), n, active, scale, mask.empty() ? nullptr : mask.data());
    CHECK(all_finite(vectorised));
    CHECK(all_finite(scalar));
    CHECK_CLOSE(compare(vectorised, expected, tolerance<T>, tolerance<T>));
    CHECK_CLOSE(compare(scalar, expected, tolerance<T>, tolerance<T>));
    return vectorised;
  };

  // Offsets of +-1e4 and, in each type, about the largest logit whose
  // differences still fit: z - max is formed before exp, so nothing overflows.
  for (const T offset : {T(1e4), T(-1e4), T(1e30), T(-1e30), T(std::is_same_v<T, double> ? 1e300 : 1e38)}) {
    CAPTURE(offset);
    std::vector<T> x = random_vector<T>(n, 5, -20, 20);
    x[top_at] = 25;
    for (T& v : x) v += offset;
    both(x, n, T(1), {});
    both(x, 30, T(1), {});     // inactive tail (a causal row)
    both(x, n, T(0.125), {});  // scaled
  }

  // One dominant logit: exactly one-hot.
  {
    std::vector<T> x = random_vector<T>(n, 6, -1, 1);
    x[top_at] = T(1e4);
    const std::vector<T> y = both(x, n, T(1), {});
    for (rf::index_t j = 0; j < n; ++j) CHECK(y[j] == (j == top_at ? T(1) : T(0)));
  }
  // The extremes of the type: max twice (ties split evenly), lowest elsewhere.
  {
    std::vector<T> x(n, lowest);
    x[top_at] = big;
    x[(top_at + 1) % n] = big;
    const std::vector<T> y = both(x, n, T(1), {});
    CHECK(y[top_at] == T(0.5));
    CHECK(y[(top_at + 1) % n] == T(0.5));
  }
  // A row of the most negative finite logits is uniform (not a masked row).
  {
    const std::vector<T> y = both(std::vector<T>(n, lowest), n, T(1), {});
    for (const T v : y) CHECK(v == Approx(1.0 / double(n)).epsilon(4 * std::numeric_limits<T>::epsilon()));
  }
  // Masked keys next to huge logits: the visible key alone gets everything.
  {
    std::vector<T> x = random_vector<T>(n, 7, -1, 1), mask(n, -inf);
    for (T& v : x) v *= T(1e30);
    mask[top_at] = 0;
    const std::vector<T> y = both(x, n, T(1), mask);
    for (rf::index_t j = 0; j < n; ++j) CHECK(y[j] == (j == top_at ? T(1) : T(0)));
  }
  // Every key masked: all zeros, never NaN.
  {
    const std::vector<T> y = both(random_vector<T>(n, 8, -1e30, 1e30), n, T(1), std::vector<T>(n, -inf));
    for (const T v : y) CHECK(v == T(0));
  }
}

TEMPLATE_TEST_CASE("attention with logits far beyond exp's range matches the double reference", "[numerics][attention]",
                   float, double) {
  using T = TestType;
  const bool causal = GENERATE(false, true);
  const bool symmetric = GENERATE(false, true);
  CAPTURE(causal, symmetric);
  const auto run = [&](T c, layout lay) {
    CAPTURE(c, static_cast<int>(lay));
    return symmetric ? check_extreme_logits<T, rf::score_function::symmetric>(c, lay, causal)
                     : check_extreme_logits<T, rf::score_function::standard>(c, lay, causal);
  };
  // Logits ~ c^2 / 2: 8192 (exp overflows float and double beyond ~89 and
  // ~710), 2^21 in both types, 2^39 in double; the differences between keys stay
  // moderate, so the rows are smooth distributions.
  run(T(0x1p7), layout::offset);
  run(T(0x1p11), layout::offset);
  if constexpr (std::is_same_v<T, double>) run(T(0x1p20), layout::offset);

  // One key dominates every row by >= c^2 / 2: exactly one-hot, up to
  // logits of 2^99 * 529 ~ 7e32 in float and 2^499 * 529 ~ 1.7e153 in double.
  std::size_t one_hot = run(T(0x1p7), layout::dominant).one_hot_rows;
  one_hot += run(T(0x1p50), layout::dominant).one_hot_rows;
  if constexpr (std::is_same_v<T, double>) one_hot += run(T(0x1p250), layout::dominant).one_hot_rows;
  CHECK(one_hot > 0);  // the one-hot branch was exercised

  // Tied maxima: the tied keys share the row evenly (compared with the reference).
  run(T(0x1p7), layout::ties);
  run(T(0x1p50), layout::ties);
}

TEMPLATE_TEST_CASE("a fully masked sequence gets zero probabilities and a zero context, never NaN", "[numerics][mask]",
                   float, double) {
  using T = TestType;
  const bool causal = GENERATE(false, true);
  const rf::score_function score = GENERATE(rf::score_function::standard, rf::score_function::symmetric);
  const int threads = GENERATE(1, 2);
  CAPTURE(causal, rf::name_of(score), threads);
  constexpr rf::index_t batch = 3, seq = 75, d = 32, heads = 4;  // 75 rows: two query blocks (of 64 to 72)

  rf::encoder_config c;
  c.hidden_size = d;
  c.num_attention_heads = heads;
  c.intermediate_size = 40;
  c.num_hidden_layers = 1;
  c.score = score;
  c.causal = causal;
  rf::encoder_parameters<T> params(c);
  params.fill_random(3, 1.0 / std::sqrt(double(d)));
  // Non-zero output bias, so "output = bias" is not "output = 0".
  const rf::attention_weights<T> weights = params.layers()[0].attention;
  {
    T* bias = params.values().data() + (weights.output.bias.data() - params.values().data());
    for (rf::index_t o = 0; o < d; ++o) bias[o] = T(0.25) + T(o) / T(64);
  }

  // Sequence 0: all tokens. Sequence 1: attention_mask all 0. Sequence 2:
  // left-padded (tokens 0, 1 are padding) and right-padded (last 3).
  std::vector<std::int64_t> mask(static_cast<std::size_t>(batch * seq), 1);
  for (rf::index_t n = 0; n < seq; ++n) mask[static_cast<std::size_t>(seq + n)] = 0;
  for (const rf::index_t n : {rf::index_t(0), rf::index_t(1), seq - 3, seq - 2, seq - 1})
    mask[static_cast<std::size_t>(2 * seq + n)] = 0;
  const std::vector<T> x = random_vector<T>(static_cast<std::size_t>(batch * seq * d), 17);
  std::vector<T> y(x.size()), stack(static_cast<std::size_t>(batch * heads * seq * seq), T(-7));
  const rf::tensor_view<T, 4> stack_view(stack.data(), {batch, heads, seq, seq});

  rf::visit(score, [&]<rf::score_function Score>() {
    const rf::multi_head_attention<T, Score> attention(
        weights, {.hidden_size = d, .num_attention_heads = heads, .causal = causal});
    auto ws = attention.make_workspace(batch, seq, threads);
    attention.forward(
        rf::tensor_view<const T, 3>(x.data(), {batch, seq, d}), rf::tensor_view<T, 3>(y.data(), {batch, seq, d}), ws,
        rf::tensor_view<const std::int64_t, 2>(mask.data(), {batch, seq}), {.attentions = std::span(&stack_view, 1)});
  });

  CHECK(all_finite(y));
  CHECK(all_finite(stack));
  // Queries that see no key: sequence 1 entirely; under a causal mask also
  // queries 0 and 1 of sequence 2 (every key up to them is padding).
  const auto blind = [&](rf::index_t b, rf::index_t i) { return b == 1 || (causal && b == 2 && i < 2); };
  std::size_t blind_rows = 0;
  for (rf::index_t b = 0; b < batch; ++b)
    for (rf::index_t i = 0; i < seq; ++i) {
      if (!blind(b, i)) continue;
      ++blind_rows;
      CAPTURE(b, i);
      for (rf::index_t h = 0; h < heads; ++h)
        for (rf::index_t j = 0; j < seq; ++j)
          if (stack[static_cast<std::size_t>(((b * heads + h) * seq + i) * seq + j)] != T(0)) {
            FAIL_CHECK("head " << h << ", key " << j << ": probability is not 0");
            h = heads;
            break;
          }
      // Zero context: the output row is the output projection's bias, exactly.
      for (rf::index_t o = 0; o < d; ++o)
        CHECK(y[static_cast<std::size_t>((b * seq + i) * d + o)] == weights.output.bias(o));
    }
  CHECK(blind_rows == static_cast<std::size_t>(causal ? seq + 2 : seq));

  rf::encoder_parameters<double> exact(c);
  exact.assign_from(params);
  const auto expected = reuseformer_test::reference::attention(std::vector<double>(x.begin(), x.end()), batch, seq,
                                                               heads, exact.layers()[0].attention,
                                                               std::vector<int>(mask.begin(), mask.end()), causal);
  CHECK_CLOSE(compare(y, expected.output, tolerance<T>, tolerance<T>));
  CHECK_CLOSE(compare(stack, expected.stack, tolerance<T>, tolerance<T>));
}

TEMPLATE_TEST_CASE("an encoder keeps a fully masked sequence finite, through reused heads too", "[numerics][mask]",
                   float, double) {
  using T = TestType;
  const bool causal = GENERATE(false, true);
  const rf::norm_placement norm = GENERATE(rf::norm_placement::post, rf::norm_placement::pre);
  CAPTURE(causal, norm == rf::norm_placement::pre);
  constexpr rf::index_t batch = 2, seq = 67, d = 32, heads = 4, layers = 3;

  rf::encoder_config c;
  c.hidden_size = d;
  c.num_attention_heads = heads;
  c.intermediate_size = 67;
  c.num_hidden_layers = layers;
  c.reuse_schedule = {0, 2, 4};  // layer 2 reuses every head, all of them zero rows for sequence 1
  c.causal = causal;
  c.norm = norm;
  rf::encoder_parameters<T> params(c);
  params.fill_random(4, 1.0 / std::sqrt(double(d)));
  const rf::encoder<T> model(c, params.layers());

  std::vector<int> mask(static_cast<std::size_t>(batch * seq), 1);
  for (rf::index_t n = 0; n < seq; ++n) mask[static_cast<std::size_t>(seq + n)] = 0;
  const std::vector<T> x = random_vector<T>(static_cast<std::size_t>(batch * seq * d), 18);
  std::vector<T> y(x.size());
  std::vector<std::vector<T>> stacks(layers,
                                     std::vector<T>(static_cast<std::size_t>(batch * heads * seq * seq), T(-7)));
  std::vector<rf::tensor_view<T, 4>> views;
  for (auto& s : stacks) views.emplace_back(s.data(), std::array<rf::index_t, 4>{batch, heads, seq, seq});
  auto ws = model.make_workspace(batch, seq, 2);
  model.forward(rf::tensor_view<const T, 3>(x.data(), {batch, seq, d}),
                rf::tensor_view<T, 3>(y.data(), {batch, seq, d}), ws,
                rf::tensor_view<const int, 2>(mask.data(), {batch, seq}), {.attentions = views});

  CHECK(all_finite(y));
  for (std::size_t l = 0; l < stacks.size(); ++l) {
    CAPTURE(l);
    CHECK(all_finite(stacks[l]));
    const auto first = stacks[l].begin() + heads * seq * seq;  // sequence 1
    CHECK(std::all_of(first, first + heads * seq * seq, [](T p) { return p == T(0); }));
  }
  rf::encoder_parameters<double> exact(c);
  exact.assign_from(params);
  const auto expected = reuseformer_test::reference::encoder(std::vector<double>(x.begin(), x.end()), batch, seq, c,
                                                             exact.layers(), mask);
  CHECK_CLOSE(compare(y, expected, tolerance<T>, tolerance<T>));
}

TEMPLATE_TEST_CASE("NaN or Inf in one sequence propagates there and never reaches the other sequence",
                   "[numerics][nan]", float, double) {
  using T = TestType;
  const int poison_kind = GENERATE(0, 1, 2);
  const T poison = poison_kind == 0   ? std::numeric_limits<T>::quiet_NaN()
                   : poison_kind == 1 ? std::numeric_limits<T>::infinity()
                                      : -std::numeric_limits<T>::infinity();
  const rf::index_t poisoned = GENERATE(as<rf::index_t>{}, 0, 1);
  const bool causal = GENERATE(false, true);
  const rf::score_function score = GENERATE(rf::score_function::standard, rf::score_function::symmetric);
  // Paired with the other parameters rather than crossed, to keep the case count down.
  const rf::norm_placement norm =
      score == rf::score_function::standard ? rf::norm_placement::post : rf::norm_placement::pre;
  const int threads = poisoned == 0 ? 1 : 2;
  CAPTURE(poison, poisoned, causal, rf::name_of(score), norm == rf::norm_placement::pre, threads);
  constexpr rf::index_t batch = 2, seq = 70, d = 32, heads = 4, layers = 3, token = 5, feature = 3;

  rf::encoder_config c;
  c.hidden_size = d;
  c.num_attention_heads = heads;
  c.intermediate_size = 67;
  c.num_hidden_layers = layers;
  c.reuse_schedule = {0, 2, 1};
  c.causal = causal;
  c.norm = norm;
  c.score = score;
  rf::encoder_parameters<T> params(c);
  params.fill_random(9, 1.0 / std::sqrt(double(d)));

  const rf::index_t other = 1 - poisoned;
  std::vector<std::int64_t> mask(static_cast<std::size_t>(batch * seq), 1);
  mask[static_cast<std::size_t>(other * seq + seq - 1)] = mask[static_cast<std::size_t>(other * seq + seq - 2)] = 0;
  const std::vector<T> clean = random_vector<T>(static_cast<std::size_t>(batch * seq * d), 19);
  std::vector<T> dirty = clean;
  dirty[static_cast<std::size_t>((poisoned * seq + token) * d + feature)] = poison;

  struct result {
    std::vector<T> hidden;
    std::vector<std::vector<T>> stacks;
  };
  const auto run = [&](const std::vector<T>& x) {
    result r{std::vector<T>(x.size()),
             std::vector<std::vector<T>>(layers, std::vector<T>(static_cast<std::size_t>(batch * heads * seq * seq)))};
    std::vector<rf::tensor_view<T, 4>> views;
    for (auto& s : r.stacks) views.emplace_back(s.data(), std::array<rf::index_t, 4>{batch, heads, seq, seq});
    rf::visit(score, [&]<rf::score_function Score>() {
      const rf::encoder<T, Score> model(c, params.layers());
      auto ws = model.make_workspace(batch, seq, threads);
      model.forward(rf::tensor_view<const T, 3>(x.data(), {batch, seq, d}),
                    rf::tensor_view<T, 3>(r.hidden.data(), {batch, seq, d}), ws,
                    rf::tensor_view<const std::int64_t, 2>(mask.data(), {batch, seq}), {.attentions = views});
    });
    return r;
  };
  const result reference = run(clean), poisoned_run = run(dirty);
  REQUIRE(all_finite(reference.hidden));

  // The other sequence: bit for bit the clean run's outputs and probabilities.
  const auto rows_of = [&](const std::vector<T>& v, rf::index_t b, rf::index_t per_sequence) {
    return std::vector<T>(v.begin() + b * per_sequence, v.begin() + (b + 1) * per_sequence);
  };
  const auto same_bits = [](const std::vector<T>& a, const std::vector<T>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
  };
  CHECK(same_bits(rows_of(poisoned_run.hidden, other, seq * d), rows_of(reference.hidden, other, seq * d)));
  for (std::size_t l = 0; l < layers; ++l) {
    CAPTURE(l);
    CHECK(same_bits(rows_of(poisoned_run.stacks[l], other, heads * seq * seq),
                    rows_of(reference.stacks[l], other, heads * seq * seq)));
  }

  // The poisoned sequence: every row the poisoned token can reach (all rows;
  // under a causal mask the token's own row and every later one) is non-finite.
  std::size_t reached = 0;
  for (rf::index_t i = causal ? token : 0; i < seq; ++i)
    reached += row_non_finite(poisoned_run.hidden, poisoned * seq + i, d);
  CHECK(reached == static_cast<std::size_t>(causal ? seq - token : seq));
}

TEST_CASE("an attention_mask holding NaN is rejected, not turned into a visible or hidden key", "[numerics][mask]") {
  rf::encoder_config c;
  c.hidden_size = 16;
  c.num_attention_heads = 2;
  c.intermediate_size = 20;
  c.num_hidden_layers = 1;
  rf::encoder_parameters<float> params(c);
  params.fill_random(2);
  const rf::encoder<float> model(c, params.layers());
  const std::vector<float> x = random_vector<float>(2 * 4 * 16, 3);
  std::vector<float> y(x.size(), 42.0f);
  std::vector<float> mask = {1, 1, 1, 1, 1, 1, std::numeric_limits<float>::quiet_NaN(), 1};
  auto ws = model.make_workspace(2, 4);
  CHECK_THROWS_AS(model.forward(rf::tensor_view<const float, 3>(x.data(), {2, 4, 16}),
                                rf::tensor_view<float, 3>(y.data(), {2, 4, 16}), ws,
                                rf::tensor_view<const float, 2>(mask.data(), {2, 4})),
                  rf::error);
  CHECK(std::all_of(y.begin(), y.end(), [](float v) { return v == 42.0f; }));  // output untouched
}
