// Incremental decoding (layers/decoder.hpp): a prefill followed by steps gives
// the outputs of one causal forward pass over the whole sequence, against the
// double-precision reference and PyTorch's causal fixtures, for every score
// function, reuse schedule (none, partial, chained, full), relative positions,
// pre- and post-LN, sequences at different positions, 1 and 2 threads, in this
// file's SIMD build; and the vector_matrix kernel against its reference.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include <reuseformer/io.hpp>
#include <reuseformer/reuseformer.hpp>

#include "support/catch.hpp"
#include "support/compare.hpp"
#include "support/fixture.hpp"
#include "support/random.hpp"
#include "support/reference.hpp"

namespace rf = reuseformer;
using reuseformer_test::compare;
using reuseformer_test::random_vector;
using rf::index_t;

namespace {

// Sequence b of x [B, total, d] is decoded as a prompt of prompts[b] rows
// (prefilled in one [B, N, d] call, N the longest prompt) followed by `steps`
// single tokens; every output row is checked against expected [B, total, d]
// where b's row is below valid[b] (the rest of x only pads the batch).
template <class Model, class T>
void check_decoding(const Model& model, const std::vector<T>& x, index_t total, const std::vector<index_t>& prompts,
                    index_t steps, const std::vector<index_t>& valid, const std::vector<double>& expected, int threads,
                    double rel, double abs) {
  const index_t batch = static_cast<index_t>(prompts.size()), d = model.hidden_size();
  const index_t seq = *std::max_element(prompts.begin(), prompts.end());
  rf::decoder state(model, batch, seq + steps, threads);
  const auto row = [&](index_t b, index_t j) { return (b * total + j) * d; };
  const auto check_row = [&](const T* actual, index_t b, index_t j) {
    if (j >= valid[static_cast<std::size_t>(b)]) return;
    INFO("sequence " << b << ", position " << j);
    CHECK_CLOSE(compare(actual, expected.data() + row(b, j), static_cast<std::size_t>(d), rel, abs));
  };

  std::vector<T> prompt(static_cast<std::size_t>(batch * seq * d), T(0));
  for (index_t b = 0; b < batch; ++b)
    std::copy_n(x.begin() + row(b, 0), prompts[static_cast<std::size_t>(b)] * d, prompt.begin() + b * seq * d);
  std::vector<T> out(prompt.size());
  state.prefill(rf::tensor_view<const T, 3>(prompt.data(), {batch, seq, d}),
                rf::tensor_view<T, 3>(out.data(), {batch, seq, d}), prompts);
  for (index_t b = 0; b < batch; ++b) {
    const index_t p = prompts[static_cast<std::size_t>(b)];
    for (index_t j = 0; j < p; ++j) check_row(out.data() + (b * seq + j) * d, b, j);
    CHECK(std::all_of(out.begin() + (b * seq + p) * d, out.begin() + (b + 1) * seq * d, [](T v) { return v == T(0); }));
  }
  CHECK(std::vector<index_t>(state.lengths().begin(), state.lengths().end()) == prompts);

  std::vector<T> token(static_cast<std::size_t>(batch * d)), token_out(token.size());
  for (index_t k = 0; k < steps; ++k) {
    for (index_t b = 0; b < batch; ++b)
      std::copy_n(x.begin() + row(b, prompts[static_cast<std::size_t>(b)] + k), d, token.begin() + b * d);
    state.step(rf::tensor_view<const T, 3>(token.data(), {batch, 1, d}),
               rf::tensor_view<T, 3>(token_out.data(), {batch, 1, d}));
    for (index_t b = 0; b < batch; ++b)
      check_row(token_out.data() + b * d, b, prompts[static_cast<std::size_t>(b)] + k);
  }
}

rf::encoder_config decoding_config(rf::score_function score, std::vector<index_t> schedule, bool relative,
                                   rf::norm_placement norm) {
  rf::encoder_config c;
  c.hidden_size = 32;
  c.num_attention_heads = 4;
  c.intermediate_size = 40;
  c.num_hidden_layers = static_cast<index_t>(schedule.size());
  c.reuse_schedule = std::move(schedule);
  c.causal = true;
  c.score = score;
  c.norm = norm;
  c.use_relative_pe = relative;
  c.pe_max_seq_length = 4;  // shorter than the sequences: the clamped ends of the table are used
  return c;
}

}  // namespace

TEMPLATE_TEST_CASE("vector_matrix: vector path equals the scalar reference", "[kernels][decoder]", float, double) {
  using T = TestType;
  for (const index_t rows : {1, 7, 64})
    for (const index_t cols : {1, 5, 16, 63, 64, 129}) {
      const index_t ld = cols + 3;
      const auto x = random_vector<T>(static_cast<std::size_t>(rows), 1);
      const auto m = random_vector<T>(static_cast<std::size_t>(rows * ld), 2);
      std::vector<T> fast(static_cast<std::size_t>(cols)), slow(fast.size());
      rf::simd::vector_matrix<T>(x.data(), rows, m.data(), cols, ld, fast.data());
      rf::simd::reference::vector_matrix<T>(x.data(), rows, m.data(), cols, ld, slow.data());
      std::vector<double> exact(fast.size(), 0.0);
      for (index_t c = 0; c < cols; ++c)
        for (index_t i = 0; i < rows; ++i) exact[c] += double(x[i]) * double(m[i * ld + c]);
      CAPTURE(rows, cols);
      const double tol = std::is_same_v<T, float> ? 1e-5 : 1e-13;
      CHECK_CLOSE(compare(fast, exact, tol, tol));
      CHECK_CLOSE(compare(slow, exact, tol, tol));
    }
}

TEMPLATE_TEST_CASE("decoding: prefill and steps equal the causal forward pass (double reference)", "[decoder]", float,
                   double) {
  using T = TestType;
  const rf::score_function score =
      GENERATE(from_range(std::begin(rf::all_score_functions), std::end(rf::all_score_functions)));
  // none, partial, chained (layer 2 reuses 4 heads, more than layer 1's 1 fresh one), full
  const std::vector<index_t> schedule = GENERATE(std::vector<index_t>{0, 0, 0}, std::vector<index_t>{0, 2, 1},
                                                 std::vector<index_t>{0, 3, 4}, std::vector<index_t>{0, 4, 4});
  const bool relative = GENERATE(false, true);
  const rf::norm_placement norm = relative ? rf::norm_placement::pre : rf::norm_placement::post;
  CAPTURE(rf::name_of(score), schedule, relative);

  const rf::encoder_config c = decoding_config(score, schedule, relative, norm);
  rf::encoder_parameters<T> params(c);
  params.fill_random(7, 0.3);
  const index_t batch = 3, steps = 5, d = c.hidden_size;
  const std::vector<index_t> prompts{6, 1, 9};  // different positions throughout
  const index_t total = 9 + steps;
  const auto x = random_vector<T>(static_cast<std::size_t>(batch * total * d), 11);
  const std::vector<double> expected = reuseformer_test::reference::encoder(std::vector<double>(x.begin(), x.end()),
                                                                            batch, total, c, params.layers(), {});
  const double tol = reuseformer_test::reference::tolerance<T>;
  rf::visit(score, [&]<rf::score_function Score>() {
    const rf::encoder<T, Score> model(c, params.layers());
    for (const int threads : {1, 2}) {
      CAPTURE(threads);
      check_decoding(model, x, total, prompts, steps, {total, total, total}, expected, threads, tol, tol);
    }
  });
}

TEMPLATE_TEST_CASE("decoding: a cache long enough for query blocks, batch 1, from an empty cache", "[decoder]", float,
                   double) {
  using T = TestType;
  // 80 prompt tokens cross a query block of the prefill's attention core;
  // a one-token prompt decodes almost everything step by step.
  const index_t prompt = GENERATE(80, 1);
  const rf::encoder_config c =
      decoding_config(rf::score_function::standard, {0, 2, 4, 0}, true, rf::norm_placement::post);
  rf::encoder_parameters<T> params(c);
  params.fill_random(3, 0.3);
  const index_t total = 90, d = c.hidden_size;
  const auto x = random_vector<T>(static_cast<std::size_t>(total * d), 5);
  const std::vector<double> expected =
      reuseformer_test::reference::encoder(std::vector<double>(x.begin(), x.end()), 1, total, c, params.layers(), {});
  const rf::encoder<T> model(c, params.layers());
  const double tol = reuseformer_test::reference::tolerance<T>;
  check_decoding(model, x, total, {prompt}, total - prompt, {total}, expected, 2, tol, tol);
}

namespace {

// Decodes a PyTorch causal fixture (config.json, weights, hidden_states and
// expected outputs from the same model's forward pass with a right-padded
// key mask): each sequence's prompt is its first tokens but three, the rest
// are steps; padded positions have no expected output and are not compared.
template <class T>
void check_fixture(const std::string& name) {
  const std::filesystem::path dir = REUSEFORMER_FIXTURE_DIR;
  const reuseformer_test::fixture f(name);
  const rf::io::model_config config = rf::io::read_config_json((dir / (name + ".config.json")).string());
  REQUIRE(config.encoder.causal);
  const auto shape = f.shape("hidden_states");
  const index_t batch = shape[0], total = shape[1];
  const std::vector<float> input = f.f32("hidden_states");
  const std::vector<T> x(input.begin(), input.end());
  const std::vector<std::int64_t> mask = f.i64("attention_mask");
  std::vector<index_t> valid, prompts;
  for (index_t b = 0; b < batch; ++b) {
    const auto first = mask.begin() + b * total;
    valid.push_back(std::count(first, first + total, 1));
    REQUIRE(std::all_of(first, first + valid.back(), [](std::int64_t m) { return m == 1; }));  // right padding
    prompts.push_back(std::max<index_t>(1, valid.back() - 3));
  }
  const index_t steps = total - *std::max_element(prompts.begin(), prompts.end());
  const double tol = std::is_same_v<T, float> ? 1e-5 : 1e-10;
  rf::visit(config.encoder.score, [&]<rf::score_function Score>() {
    const rf::io::bert_model<T, Score> model(config, rf::io::safetensors_reader(dir / (name + ".safetensors")));
    for (const int threads : {1, 2}) {
      CAPTURE(name, threads);
      check_decoding(model.encoder(), x, total, prompts, steps, valid, f.f64("expected"), threads, tol, tol);
    }
  });
}

}  // namespace

TEMPLATE_TEST_CASE("decoding: PyTorch causal fixtures", "[decoder][pytorch]", float, double) {
  // pre-LN relu; chained reuse [0, 3, 1, 4]; symmetric; pairwise diagonal with reuse
  const std::string name = GENERATE(std::string("encoder_pre_ln_relu_causal"), std::string("reuse_explicit_causal"),
                                    std::string("symmetric_causal"), std::string("pairwise_diagonal"));
  check_fixture<TestType>(name);
}
