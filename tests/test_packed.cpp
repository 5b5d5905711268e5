// Packed batches (docs/semantics.md §Packed batches): tokens [T, d] with sequence
// offsets [B + 1]. Each sequence attends within itself only, so the packed
// result at every real token equals the padded batch's: checked against the
// double-precision reference run on the padded batch, for the encoder, the
// encoder layer and the attention, every score function kind, reuse (chained
// too), causal or not, 1 and 2 threads; and against the library's own padded
// pass and its padding::skip mode. In this file's SIMD build.
#include <algorithm>
#include <cmath>
#include <cstdint>
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

// A ragged batch: lengths, their offsets, and the same tokens padded to the
// longest sequence (right padding, mask 1 then 0).
struct ragged_batch {
  std::vector<rf::index_t> lengths, offsets;
  rf::index_t batch, seq, tokens, squares = 0;  // squares: sum of N_b²
  std::vector<int> mask;                        // [B, N]

  explicit ragged_batch(std::vector<rf::index_t> l)
      : lengths(std::move(l)),
        offsets{0},
        batch(static_cast<rf::index_t>(lengths.size())),
        seq(std::max<rf::index_t>(1, *std::max_element(lengths.begin(), lengths.end()))),
        tokens(0) {
    for (const rf::index_t n : lengths) {
      offsets.push_back(tokens += n);
      squares += n * n;
    }
    mask.assign(static_cast<std::size_t>(batch * seq), 0);
    for (rf::index_t b = 0; b < batch; ++b)
      std::fill_n(mask.begin() + b * seq, lengths[static_cast<std::size_t>(b)], 1);
  }

  // Rows of a padded [B, N, width] tensor at the real tokens, packed [T, width].
  template <class T>
  std::vector<T> pack(const std::vector<T>& padded, rf::index_t width) const {
    std::vector<T> out;
    for (rf::index_t b = 0; b < batch; ++b) {
      const auto first = padded.begin() + b * seq * width;
      out.insert(out.end(), first, first + lengths[static_cast<std::size_t>(b)] * width);
    }
    return out;
  }

  // Each sequence's first `heads` [N_b, N_b] matrices (the packed probability
  // layout) from a padded [B, stacked, N, N] stack.
  template <class T>
  std::vector<T> pack_stack(const std::vector<T>& padded, rf::index_t stacked, rf::index_t heads) const {
    std::vector<T> out;
    for (rf::index_t b = 0; b < batch; ++b)
      for (rf::index_t h = 0; h < heads; ++h)
        for (rf::index_t i = 0; i < lengths[static_cast<std::size_t>(b)]; ++i) {
          const auto row = padded.begin() + ((b * stacked + h) * seq + i) * seq;
          out.insert(out.end(), row, row + lengths[static_cast<std::size_t>(b)]);
        }
    return out;
  }
};

// Lengths that exercise it all: an empty sequence, a single token, one over a
// query block (two blocks), and short ones.
const std::vector<rf::index_t> mixed_lengths{5, 0, 75, 1, 33};

rf::encoder_config packed_config(rf::score_function score, std::vector<rf::index_t> schedule, bool causal) {
  rf::encoder_config c;
  c.hidden_size = 32;
  c.num_attention_heads = 4;
  c.intermediate_size = 67;
  c.num_hidden_layers = static_cast<rf::index_t>(schedule.size());
  c.reuse_schedule = std::move(schedule);
  c.causal = causal;
  c.score = score;
  return c;
}

template <class T, class Model>
std::vector<T> packed_forward(const Model& model, const ragged_batch& r, const std::vector<T>& x, int threads,
                              const rf::packed_attention_io<T>& io = {}) {
  const rf::index_t d = model.hidden_size();
  std::vector<T> y(x.size());
  auto ws = model.make_workspace(r.offsets, threads);
  model.forward(rf::tensor_view<const T, 2>(x.data(), {r.tokens, d}), rf::tensor_view<T, 2>(y.data(), {r.tokens, d}),
                r.offsets, ws, io);
  return y;
}

}  // namespace

TEMPLATE_TEST_CASE("packed encoder equals the padded reference at every real token", "[packed]", float, double) {
  using T = TestType;
  const rf::score_function score = GENERATE(rf::score_function::standard, rf::score_function::symmetric,
                                            rf::score_function::pairwise, rf::score_function::pairwise_symmetric);
  // No reuse; partial reuse with relative-position bias; chained reuse (layer 2
  // reads 3 heads, one of them layer 1's reused head) then full reuse.
  const int schedule = GENERATE(0, 1, 2);
  const bool causal = GENERATE(false, true);
  const int threads = GENERATE(1, 2);
  const std::vector<std::vector<rf::index_t>> schedules{{0, 0}, {0, 2}, {0, 2, 3, 4}};
  rf::encoder_config c = packed_config(score, schedules[static_cast<std::size_t>(schedule)], causal);
  if (schedule == 1) {
    c.use_relative_pe = true;
    c.pe_max_seq_length = 16;
  }
  CAPTURE(rf::name_of(score), schedule, causal, threads);

  rf::encoder_parameters<T> params(c);
  params.fill_random(31, 1.0 / std::sqrt(32.0));
  rf::encoder_parameters<double> exact(c);
  exact.assign_from(params);
  const ragged_batch r(mixed_lengths);
  const std::vector<T> padded = random_vector<T>(static_cast<std::size_t>(r.batch * r.seq * 32), 9);
  std::vector<std::vector<double>> stacks;
  const auto expected = reuseformer_test::reference::encoder(std::vector<double>(padded.begin(), padded.end()), r.batch,
                                                             r.seq, c, exact.layers(), r.mask, &stacks);

  rf::visit(score, [&]<rf::score_function Score>() {
    const rf::encoder<T, Score> model(c, params.layers());
    // Every layer's probabilities too, in the packed layout: each sequence's
    // [H, N_b, N_b].
    // The reuse state: slots · sum of N_b², not slots · B · N².
    CHECK(model.reuse_state_bytes(r.offsets) ==
          static_cast<std::size_t>(model.reuse_plan().slots() * (25 + 75 * 75 + 1 + 33 * 33)) * sizeof(T));
    std::vector<std::vector<T>> attentions(static_cast<std::size_t>(c.num_hidden_layers),
                                           std::vector<T>(static_cast<std::size_t>(4 * r.squares)));
    std::vector<rf::tensor_view<T, 1>> views;
    for (auto& a : attentions) views.emplace_back(a.data(), std::array<rf::index_t, 1>{4 * r.squares});
    const std::vector<T> y = packed_forward<T>(model, r, r.pack(padded, 32), threads, {.attentions = views});
    CHECK_CLOSE(compare(y, r.pack(expected, 32), tolerance<T>, tolerance<T>));
    for (std::size_t l = 0; l < attentions.size(); ++l) {
      INFO("layer " << l << " probabilities");
      CHECK_CLOSE(compare(attentions[l], r.pack_stack(stacks[l], 4, 4), tolerance<T>, tolerance<T>));
    }
  });
}

TEMPLATE_TEST_CASE("packed encoder layer and attention equal the padded reference; packed reused heads", "[packed]",
                   float, double) {
  using T = TestType;
  const bool causal = GENERATE(false, true);
  const int threads = GENERATE(1, 2);
  const rf::index_t reused = GENERATE(0, 2);
  CAPTURE(causal, threads, reused);
  const rf::encoder_config c = packed_config(rf::score_function::standard, {0, reused}, causal);
  rf::encoder_parameters<T> params(c);
  params.fill_random(5, 1.0 / std::sqrt(32.0));
  rf::encoder_parameters<double> exact(c);
  exact.assign_from(params);
  const ragged_batch r({40, 1, 0, 77});
  const std::vector<T> padded = random_vector<T>(static_cast<std::size_t>(r.batch * r.seq * 32), 10);
  const std::vector<double> padded_double(padded.begin(), padded.end());

  // The previous layer's stack: distinct probability rows over each
  // sequence's real keys (zero after the diagonal under a causal mask), padded
  // [B, H, N, N] for the reference; its first K heads packed for the layer.
  std::vector<double> previous(static_cast<std::size_t>(r.batch * 4 * r.seq * r.seq));
  const std::vector<double> noise = random_vector<double>(previous.size(), 12, 0.1, 1);
  for (rf::index_t row = 0; row < r.batch * 4 * r.seq; ++row) {
    const rf::index_t b = row / (4 * r.seq), i = row % r.seq, n = r.lengths[static_cast<std::size_t>(b)];
    double sum = 0;
    for (rf::index_t j = 0; j < n && !(causal && j > i); ++j) sum += previous[row * r.seq + j] = noise[row * r.seq + j];
    for (rf::index_t j = 0; j < r.seq && sum > 0; ++j) previous[row * r.seq + j] /= sum;
  }
  std::vector<T> packed_previous;
  for (const double p : r.pack_stack(previous, 4, reused)) packed_previous.push_back(static_cast<T>(p));
  CHECK(packed_previous.size() == static_cast<std::size_t>(reused * r.squares));
  rf::packed_attention_io<T> io;
  if (reused > 0) io.reused = rf::tensor_view<const T, 1>(packed_previous.data(), {reused * r.squares});

  SECTION("encoder layer") {
    std::vector<double> stack = previous;
    const auto expected = reuseformer_test::reference::encoder_layer(padded_double, r.batch, r.seq, c,
                                                                     exact.layers()[1], r.mask, reused, stack);
    const rf::encoder_layer<T> layer(c, params.layers()[1], 1);
    CHECK_CLOSE(compare(packed_forward<T>(layer, r, r.pack(padded, 32), threads, io), r.pack(expected, 32),
                        tolerance<T>, tolerance<T>));
  }
  SECTION("attention") {
    const auto expected = reuseformer_test::reference::attention(
        padded_double, r.batch, r.seq, 4, exact.layers()[1].attention, r.mask, causal, reused, previous, 4);
    const rf::multi_head_attention<T> attention(params.layers()[1].attention,
                                                rf::encoder_layer<T>::attention_options_for(c, 1));
    CHECK_CLOSE(compare(packed_forward<T>(attention, r, r.pack(padded, 32), threads, io), r.pack(expected.output, 32),
                        tolerance<T>, tolerance<T>));
  }
}

TEMPLATE_TEST_CASE("padding::skip packs a right-padded batch: real tokens as padded, padding 0", "[packed]", float,
                   double) {
  using T = TestType;
  const bool causal = GENERATE(false, true);
  const int threads = GENERATE(1, 2);
  const bool in_place = GENERATE(false, true);
  CAPTURE(causal, threads, in_place);
  const rf::encoder_config c = packed_config(rf::score_function::symmetric, {0, 2, 3}, causal);
  rf::encoder_parameters<T> params(c);
  params.fill_random(8, 1.0 / std::sqrt(32.0));
  const rf::encoder<T, rf::score_function::symmetric> model(c, params.layers());
  const ragged_batch r(mixed_lengths);
  const std::vector<T> padded = random_vector<T>(static_cast<std::size_t>(r.batch * r.seq * 32), 4);
  const rf::tensor_view<const int, 2> mask(r.mask.data(), {r.batch, r.seq});
  auto ws = model.make_workspace(r.batch, r.seq, threads);

  std::vector<T> computed(padded.size()), skipped = in_place ? padded : std::vector<T>(padded.size(), T(7));
  model.forward(rf::view(padded, {r.batch, r.seq, 32}), rf::view(computed, {r.batch, r.seq, 32}), ws, mask);
  model.forward(rf::tensor_view<const T, 3>(in_place ? skipped.data() : padded.data(), {r.batch, r.seq, 32}),
                rf::view(skipped, {r.batch, r.seq, 32}), ws, mask, rf::padding::skip);
  // The same workspace served both; the packed pass needs less.
  CHECK(model.workspace_bytes(r.offsets, threads) < model.workspace_bytes(r.batch, r.seq, threads));

  CHECK_CLOSE(compare(r.pack(skipped, 32), r.pack(computed, 32), tolerance<T>, tolerance<T>));
  CHECK_CLOSE(compare(r.pack(skipped, 32), packed_forward<T>(model, r, r.pack(padded, 32), threads), 0.0, 0.0));
  std::vector<T> at_padding;
  for (std::size_t i = 0; i < r.mask.size(); ++i)
    if (r.mask[i] == 0) at_padding.insert(at_padding.end(), skipped.begin() + i * 32, skipped.begin() + (i + 1) * 32);
  CHECK(!at_padding.empty());
  CHECK(std::all_of(at_padding.begin(), at_padding.end(), [](T v) { return v == T(0); }));
  // padding::compute is the default form, bit for bit.
  std::vector<T> explicit_compute(padded.size());
  model.forward(rf::view(padded, {r.batch, r.seq, 32}), rf::view(explicit_compute, {r.batch, r.seq, 32}), ws, mask,
                rf::padding::compute);
  CHECK(explicit_compute == computed);
}

TEST_CASE("packed edge cases: one sequence equals the dense pass; no tokens at all", "[packed]") {
  const rf::encoder_config c = packed_config(rf::score_function::standard, {0, 2}, false);
  rf::encoder_parameters<float> params(c);
  params.fill_random(2, 0.2);
  const rf::encoder<float> model(c, params.layers());
  const ragged_batch one({70});
  const std::vector<float> x = random_vector<float>(70 * 32, 6);
  std::vector<float> dense(x.size());
  auto ws = model.make_workspace(1, 70);
  model.forward(rf::view(x, {1, 70, 32}), rf::view(dense, {1, 70, 32}), ws);
  // One sequence is the dense batch of one: the same plan, the same products, bit for bit.
  CHECK(packed_forward<float>(model, one, x, 1) == dense);
  CHECK(model.workspace_bytes(one.offsets) <= model.workspace_bytes(1, 70));

  const std::vector<rf::index_t> empty{0, 0, 0};
  std::vector<float> nothing;
  auto small = model.make_workspace(empty);
  model.forward(rf::tensor_view<const float, 2>(nothing.data(), {0, 32}),
                rf::tensor_view<float, 2>(nothing.data(), {0, 32}), empty, small);
  CHECK(model.reuse_state_bytes(empty) == 0);
}
