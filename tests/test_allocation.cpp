// A steady-state forward pass allocates nothing: every temporary lives in the
// caller's workspace; a checkpoint's load allocates little beyond what the
// model keeps. Counted with a replaced global operator new (all C++
// allocations, ours and the standard library's); the library calls no other
// allocator.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <optional>
#include <utility>
#include <vector>

#include "support/allocation_counter.hpp"
#include "support/bf16_entries.hpp"

#include <reuseformer/io.hpp>
#include <reuseformer/reuseformer.hpp>

#include "support/catch.hpp"
#include "support/random.hpp"
#include "support/temp_dir.hpp"

namespace rf = reuseformer;
namespace io = reuseformer::io;
using reuseformer_test::count_allocations;

TEST_CASE("the counters see allocations (so the checks below can fail)", "[allocation]") {
  const long news = count_allocations([] {
    std::vector<int> v(100);
    CHECK(!v.empty());
  });
  CHECK(news >= 1);
  CHECK(reuseformer_test::measure_allocations([] { CHECK(std::vector<int>(100).size() == 100); }).bytes >=
        100 * sizeof(int));
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
      model.forward(rf::tensor_view<const T, 3>(x.data(), {batch, seq, 96}),
                    rf::tensor_view<T, 3>(y.data(), {batch, seq, 96}), ws,
                    rf::attention_mask(rf::tensor_view<const std::int64_t, 2>(mask.data(), {batch, seq})));
    };
    forward();  // warm-up: the OpenMP runtime starts its thread pool here
    const long news = count_allocations([&] {
      for (int i = 0; i < 3; ++i) forward();
    });
    CHECK(news == 0);
  });
}

TEMPLATE_TEST_CASE("packed and padding-skipping passes allocate nothing, in exactly their workspace",
                   "[allocation][packed]", float, double) {
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
      model.forward(rf::tensor_view<const T, 3>(x.data(), {batch, seq, 96}),
                    rf::tensor_view<T, 3>(y.data(), {batch, seq, 96}), padded_ws,
                    rf::attention_mask(rf::tensor_view<const std::int64_t, 2>(mask.data(), {batch, seq})),
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
      state.prefill(rf::tensor_view<const T, 3>(x.data(), {batch, seq, d}),
                    rf::tensor_view<T, 3>(y.data(), {batch, seq, d}), lengths);
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

TEST_CASE("a BF16 or F32 checkpoint loads into bf16 products with no float copy of a weight",
          "[allocation][io][bf16]") {
  // Beyond what the model keeps (its packed bf16 weights and float biases, the
  // LayerNorm parameters converted from BF16), the load allocates less than
  // the float bytes of one [d, d] weight, the smallest: a BF16 file's weights
  // are packed from its bf16 values, an F32 file's read in place. Widening one
  // layer's weights to float first allocated (4 d² + 2 d·d_ff) floats per layer.
  rf::encoder_config c;
  c.hidden_size = 256;
  c.num_attention_heads = 4;
  c.intermediate_size = 512;
  c.num_hidden_layers = 2;
  rf::encoder_parameters<float> p(c);
  p.fill_random(5, 0.1);
  std::vector<io::tensor_entry> entries = io::encoder_tensors(c, p.layers());
  std::vector<std::vector<rf::bfloat16>> rounded;
  const bool bf16 = GENERATE(true, false);
  CAPTURE(bf16);
  if (bf16)
    for (io::tensor_entry& e : entries) e = reuseformer_test::rounded_to_bf16(e, rounded);
  const reuseformer_test::temp_dir dir;
  io::write_safetensors(dir / "model.safetensors", entries);
  io::model_config m;
  m.encoder = c;

  using model = io::bert_model<float, rf::score_function::standard, rf::simd::default_arch, rf::bf16_products>;
  std::optional<model> loaded;
  const std::size_t allocated = reuseformer_test::measure_allocations([&] {
                                  loaded.emplace(m, io::safetensors_reader(dir / "model.safetensors"));
                                }).bytes;
  const std::size_t kept =
      loaded->parameter_bytes() - loaded->referenced_parameter_bytes() + loaded->converted_parameter_bytes();
  CAPTURE(allocated, kept);
  REQUIRE(allocated >= kept);
  CHECK(allocated - kept < static_cast<std::size_t>(c.hidden_size * c.hidden_size) * sizeof(float));
}
