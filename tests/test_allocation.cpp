// A steady-state forward pass allocates nothing: every temporary lives in the
// caller's workspace. Counted with a replaced global operator new (all C++
// allocations, ours and the standard library's); the library calls no other
// allocator.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <utility>
#include <vector>

#include "support/allocation_counter.hpp"

#include <reuseformer/reuseformer.hpp>

#include "support/catch.hpp"
#include "support/random.hpp"

namespace rf = reuseformer;
using reuseformer_test::count_allocations;

TEST_CASE("the counters see allocations (so the checks below can fail)", "[allocation]") {
  const long news = count_allocations([] {
    std::vector<int> v(100);
    CHECK(!v.empty());
  });
  CHECK(news >= 1);
}

// Each case: the scalar type and the product backend.
TEMPLATE_TEST_CASE("a steady-state forward pass allocates nothing", "[allocation]",
                   (std::pair<float, rf::packed_products>), (std::pair<double, rf::packed_products>),
                   (std::pair<float, rf::bf16_products>)) {
  using T = typename TestType::first_type;
  using Products = typename TestType::second_type;
  rf::encoder_config c;
  c.hidden_size = 96;
  c.num_attention_heads = 4;
  c.intermediate_size = 200;
  c.num_hidden_layers = 2;
  c.norm = GENERATE(rf::norm_placement::post, rf::norm_placement::pre);
  c.causal = GENERATE(false, true);
  const int threads = GENERATE(1, 2);
  const bool reuse = GENERATE(false, true);  // layer 1 reuses 2 heads, with relative-position bias
  if (reuse) {
    c.reuse_schedule = {0, 2};
    c.use_relative_pe = true;
    c.pe_max_seq_length = 16;
  }
  c.score = GENERATE(rf::score_function::standard, rf::score_function::symmetric, rf::score_function::pairwise);
  CAPTURE(c.norm == rf::norm_placement::pre, c.causal, threads, reuse, rf::name_of(c.score));

  rf::encoder_parameters<T> p(c);
  p.fill_random(1, 0.1);
  rf::visit(c.score, [&]<rf::score_function Score>() {
    const rf::encoder<T, Score, rf::simd::default_arch, Products> model(c, p.layers());
    const rf::index_t batch = 2, seq = 130;  // several query blocks per head
    const std::vector<T> x = reuseformer_test::random_vector<T>(static_cast<std::size_t>(batch * seq * 96), 3);
    std::vector<T> y(x.size());
    std::vector<std::int64_t> mask(static_cast<std::size_t>(batch * seq), 1);
    mask.back() = 0;
    auto ws = model.make_workspace(batch, seq, threads);
    const auto forward = [&] {
      model.forward(rf::tensor_view<const T, 3>(x.data(), {batch, seq, 96}), rf::tensor_view<T, 3>(y.data(), {batch, seq, 96}),
                    ws, rf::attention_mask(rf::tensor_view<const std::int64_t, 2>(mask.data(), {batch, seq})));
    };
    forward();  // warm-up: the OpenMP runtime starts its thread pool here
    const long news = count_allocations([&] {
      for (int i = 0; i < 3; ++i) forward();
    });
    CHECK(news == 0);
  });
}

TEMPLATE_TEST_CASE("packed and padding-skipping passes allocate nothing, in exactly their workspace", "[allocation][packed]",
                   float, double) {
  using T = TestType;
  rf::encoder_config c;
  c.hidden_size = 96;
  c.num_attention_heads = 4;
  c.intermediate_size = 200;
  c.num_hidden_layers = 3;
  c.causal = GENERATE(false, true);
  c.reuse_schedule = {0, 2, 3};  // chained reuse: the state holds sum of N_b² per slot
  c.score = GENERATE(rf::score_function::standard, rf::score_function::symmetric);
  const int threads = GENERATE(1, 2);
  CAPTURE(c.causal, rf::name_of(c.score), threads);
  rf::encoder_parameters<T> p(c);
  p.fill_random(1, 0.1);
  rf::visit(c.score, [&]<rf::score_function Score>() {
    const rf::encoder<T, Score> model(c, p.layers());
    const std::vector<rf::index_t> offsets{0, 130, 130, 131, 200};  // an empty sequence, one of a single token
    const rf::index_t tokens = offsets.back(), batch = 4, seq = 130;
    const std::vector<T> x = reuseformer_test::random_vector<T>(static_cast<std::size_t>(batch * seq * 96), 3);
    std::vector<T> y(x.size());
    std::vector<std::int64_t> mask(static_cast<std::size_t>(batch * seq), 0);
    for (rf::index_t b = 0; b < batch; ++b) std::fill_n(mask.begin() + b * seq, offsets[b + 1] - offsets[b], 1);

    // Exactly workspace_bytes(offsets): a workspace one line smaller is refused.
    const std::size_t bytes = model.workspace_bytes(offsets, threads);
    rf::workspace ws(bytes, threads), short_ws(bytes - 64, threads);
    const auto packed = [&](rf::workspace& w) {
      model.forward(rf::tensor_view<const T, 2>(x.data(), {tokens, 96}), rf::tensor_view<T, 2>(y.data(), {tokens, 96}),
                    offsets, w);
    };
    CHECK_THROWS_AS(packed(short_ws), rf::error);
    auto padded_ws = model.make_workspace(batch, seq, threads);
    const auto skipping = [&] {
      model.forward(rf::tensor_view<const T, 3>(x.data(), {batch, seq, 96}), rf::tensor_view<T, 3>(y.data(), {batch, seq, 96}),
                    padded_ws, rf::attention_mask(rf::tensor_view<const std::int64_t, 2>(mask.data(), {batch, seq})),
                    rf::padding::skip);
    };
    packed(ws);  // warm-up: the OpenMP runtime starts its thread pool here
    skipping();
    const long news = count_allocations([&] {
      for (int i = 0; i < 2; ++i) {
        packed(ws);
        skipping();
      }
    });
    CHECK(news == 0);
  });
}

TEMPLATE_TEST_CASE("decoding allocates nothing after the decoder is built", "[allocation][decoder]", float, double) {
  using T = TestType;
  rf::encoder_config c;
  c.hidden_size = 64;
  c.num_attention_heads = 4;
  c.intermediate_size = 100;
  c.num_hidden_layers = 3;
  c.causal = true;
  c.norm = GENERATE(rf::norm_placement::post, rf::norm_placement::pre);
  c.score = GENERATE(rf::score_function::standard, rf::score_function::symmetric, rf::score_function::pairwise);
  c.reuse_schedule = {0, 2, 4};
  c.use_relative_pe = true;
  c.pe_max_seq_length = 8;
  const int threads = GENERATE(1, 2);
  CAPTURE(c.norm == rf::norm_placement::pre, rf::name_of(c.score), threads);

  rf::encoder_parameters<T> p(c);
  p.fill_random(1, 0.1);
  rf::visit(c.score, [&]<rf::score_function Score>() {
    const rf::encoder<T, Score> model(c, p.layers());
    const rf::index_t batch = 2, seq = 80, d = 64;
    rf::decoder state(model, batch, seq + 8, threads);
    const std::vector<T> x = reuseformer_test::random_vector<T>(static_cast<std::size_t>(batch * seq * d), 3);
    std::vector<T> y(x.size());
    const std::vector<rf::index_t> lengths{seq, 17};
    const auto prefill = [&] {
      state.prefill(rf::tensor_view<const T, 3>(x.data(), {batch, seq, d}), rf::tensor_view<T, 3>(y.data(), {batch, seq, d}),
                    lengths);
    };
    const auto step = [&] {
      state.step(rf::tensor_view<const T, 3>(x.data(), {batch, 1, d}), rf::tensor_view<T, 3>(y.data(), {batch, 1, d}));
    };
    prefill();  // warm-up: the OpenMP runtime starts its thread pool here
    step();
    const long news = count_allocations([&] {
      prefill();
      for (int i = 0; i < 8; ++i) step();
    });
    CHECK(news == 0);
  });
}
