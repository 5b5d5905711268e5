// Symmetric and pairwise score functions (docs/semantics.md §Symmetric and
// pairwise scores) in this file's SIMD build: the triangular logits kernel against the full product and a double
// reference, the pairwise query transform, and whole encoders of every score
// function (with reuse, padding, causal masks) against the double reference.
#include <algorithm>
#include <cmath>
#include <vector>

#include <reuseformer/reuseformer.hpp>

#include "support/catch.hpp"
#include "support/compare.hpp"
#include "support/random.hpp"
#include "support/reference.hpp"

namespace rf = reuseformer;
using reuseformer_test::compare;
using reuseformer_test::random_vector;
using reuseformer_test::reference::tolerance;

namespace {

// Runs attention::logits for [B*N, F*dh] operands q, k and returns [B, F, N, N].
template <class T>
std::vector<T> all_logits(const rf::attention::problem& p, const std::vector<T>& q, const std::vector<T>& k,
                          int threads) {
  const rf::index_t width = p.fresh_heads * p.head_dim, rows = p.batch.tokens(), seq = p.batch.max_length();
  rf::attention::head_io<T> io;
  io.q = {q.data(), rows, width, width};
  io.k = {k.data(), rows, width, width};
  const rf::index_t stride = rf::round_to_line<T>(rf::attention::scratch_elements<T>(p));
  rf::workspace ws(static_cast<std::size_t>(stride * threads) * sizeof(T), threads);
  T* scratch = ws.make_arena().template take<T>(stride * threads);
  std::vector<T> out(static_cast<std::size_t>(p.batch.batch() * p.fresh_heads * seq * seq), T(-7));
  rf::attention::logits<T>(p, io, out.data(), seq, {scratch, stride, threads});
  return out;
}

}  // namespace

TEMPLATE_TEST_CASE("symmetric logits: one triangle, mirrored, equals the full product and Q Qᵀ", "[scores][kernel]",
                   float, double) {
  using T = TestType;
  const rf::index_t seq = GENERATE(1, 5, 64, 70, 75, 130);
  const bool causal = GENERATE(false, true);
  const int threads = GENERATE(1, 2);
  const rf::index_t batch = 2, heads = 3, dh = 16, width = heads * dh;
  CAPTURE(seq, causal, threads);
  const std::vector<T> q = random_vector<T>(static_cast<std::size_t>(batch * seq * width), 17);

  rf::attention::problem p{rf::sequences::dense(batch, seq), heads, dh, causal, heads, true};
  const std::vector<T> triangle = all_logits(p, q, q, threads);
  p.symmetric_logits = false;
  const std::vector<T> full = all_logits(p, q, q, threads);

  // Q Qᵀ in double; the bound is relative to the logits' scale (|q| <= 1, dh terms).
  std::vector<double> exact(triangle.size());
  for (rf::index_t b = 0; b < batch; ++b)
    for (rf::index_t h = 0; h < heads; ++h)
      for (rf::index_t i = 0; i < seq; ++i)
        for (rf::index_t j = 0; j < seq; ++j) {
          double s = 0;
          for (rf::index_t c = 0; c < dh; ++c)
            s += double(q[(b * seq + i) * width + h * dh + c]) * double(q[(b * seq + j) * width + h * dh + c]);
          exact[((b * heads + h) * seq + i) * seq + j] = s;
        }
  const double rel = std::is_same_v<T, float> ? 1e-6 : 1e-12, scale = double(dh);
  // Under a causal mask only the lower triangle is defined (and used).
  const auto visible = [&](const std::vector<auto>& values) {
    std::vector<double> out;
    for (std::size_t at = 0; at < values.size(); ++at) {
      const auto i = static_cast<rf::index_t>(at) / seq % seq, j = static_cast<rf::index_t>(at) % seq;
      if (!causal || j <= i) out.push_back(static_cast<double>(values[at]));
    }
    return out;
  };
  CHECK_CLOSE(compare(visible(triangle), visible(full), rel, rel * scale));
  CHECK_CLOSE(compare(visible(triangle), visible(exact), tolerance<T>, tolerance<T> * scale));
  if (!causal) {
    bool symmetric = true;
    for (rf::index_t bh = 0; bh < batch * heads; ++bh)
      for (rf::index_t i = 0; i < seq; ++i)
        for (rf::index_t j = 0; j < i; ++j)
          symmetric = symmetric && triangle[(bh * seq + i) * seq + j] == triangle[(bh * seq + j) * seq + i];
    CHECK(symmetric);  // bit for bit: the upper half is a copy
  }
}

TEMPLATE_TEST_CASE("the pairwise transform: Q P per head, full and diagonal", "[scores][kernel]", float, double) {
  using T = TestType;
  const bool diagonal = GENERATE(false, true);
  const int threads = GENERATE(1, 2);
  const rf::index_t rows = 300, heads = 3, dh = 16, width = heads * dh;  // 300 rows: two tasks per head
  CAPTURE(diagonal, threads);
  const std::vector<T> q = random_vector<T>(static_cast<std::size_t>(rows * width), 3);
  std::vector<T> factors = random_vector<T>(static_cast<std::size_t>(heads * dh * dh), 4);
  if (diagonal)  // only the diagonal may be read: poison the rest
    for (rf::index_t at = 0; at < heads * dh * dh; ++at)
      if (at % (dh * dh) / dh != at % dh) factors[at] = T(1e30);
  const rf::index_t stride = rf::round_to_line<T>(rf::attention::pairwise_scratch_elements<T>(rows, dh));
  rf::workspace ws(static_cast<std::size_t>(stride * threads) * sizeof(T), threads);
  T* scratch = ws.make_arena().template take<T>(stride * threads);
  std::vector<T> out(q.size());
  rf::attention::apply_pairwise_factors<T>({q.data(), rows, width, width}, factors.data(), heads, dh, diagonal,
                                           {out.data(), rows, width, width}, {scratch, stride, threads});
  std::vector<double> expected(q.size());
  for (rf::index_t r = 0; r < rows; ++r)
    for (rf::index_t h = 0; h < heads; ++h)
      for (rf::index_t e = 0; e < dh; ++e) {
        double s = 0;
        for (rf::index_t c = 0; c < dh; ++c)
          if (!diagonal || c == e) s += double(q[r * width + h * dh + c]) * double(factors[(h * dh + c) * dh + e]);
        expected[r * width + h * dh + e] = s;
      }
  CHECK_CLOSE(compare(out, expected, tolerance<T>, tolerance<T>));
}

TEMPLATE_TEST_CASE("encoders of every score function match the double reference", "[scores][encoder]", float, double) {
  using T = TestType;
  const rf::score_function score =
      GENERATE(rf::score_function::standard, rf::score_function::symmetric, rf::score_function::pairwise,
               rf::score_function::pairwise_diagonal, rf::score_function::pairwise_symmetric);
  struct schedule_case {
    const char* name;
    std::vector<rf::index_t> schedule;
    bool relative;
  };
  const schedule_case sc =
      GENERATE(schedule_case{"no reuse", {0, 0}, false}, schedule_case{"chained reuse", {0, 3, 1, 4}, false},
               schedule_case{"reuse, relative position", {0, 2, 1}, true});
  const bool causal = GENERATE(false, true);
  const int threads = GENERATE(1, 2);
  const rf::index_t batch = 2, seq = 75, d = 32;  // 75 rows: two query blocks (of 64 to 72)
  CAPTURE(rf::name_of(score), sc.name, causal, threads);

  rf::encoder_config c;
  c.hidden_size = d;
  c.num_attention_heads = 4;
  c.intermediate_size = 2 * d + 3;
  c.num_hidden_layers = static_cast<rf::index_t>(sc.schedule.size());
  c.reuse_schedule = sc.schedule;
  c.causal = causal;
  c.score = score;
  c.use_relative_pe = sc.relative;
  c.pe_max_seq_length = 40;
  rf::encoder_parameters<T> params(c);
  params.fill_random(31, 1.0 / std::sqrt(double(d)));
  rf::encoder_parameters<double> exact(c);
  exact.assign_from(params);

  const std::vector<T> x = random_vector<T>(static_cast<std::size_t>(batch * seq * d), 32);
  std::vector<int> mask(static_cast<std::size_t>(batch * seq), 1);
  std::fill(mask.end() - 5, mask.end(), 0);  // the second sequence has 5 pads
  const rf::index_t heads = c.num_attention_heads;
  std::vector<T> y(x.size());
  std::vector<std::vector<T>> stacks(sc.schedule.size(),
                                     std::vector<T>(static_cast<std::size_t>(batch * heads * seq * seq)));
  std::vector<rf::tensor_view<T, 4>> views;
  for (auto& stack : stacks) views.emplace_back(stack.data(), std::array<rf::index_t, 4>{batch, heads, seq, seq});

  rf::visit(score, [&]<rf::score_function Score>() {
    const rf::encoder<T, Score> model(c, params.layers());
    auto ws = model.make_workspace(batch, seq, threads);
    model.forward(rf::tensor_view<const T, 3>(x.data(), {batch, seq, d}),
                  rf::tensor_view<T, 3>(y.data(), {batch, seq, d}), ws,
                  rf::tensor_view<const int, 2>(mask.data(), {batch, seq}), {.attentions = views});
  });

  std::vector<std::vector<double>> expected_stacks;
  const auto expected = reuseformer_test::reference::encoder(std::vector<double>(x.begin(), x.end()), batch, seq, c,
                                                             exact.layers(), mask, &expected_stacks);
  CHECK_CLOSE(compare(y, expected, tolerance<T>, tolerance<T>));
  for (std::size_t l = 0; l < stacks.size(); ++l) {
    CAPTURE(l);
    CHECK_CLOSE(compare(stacks[l], expected_stacks[l], tolerance<T>, tolerance<T>));
  }
}
