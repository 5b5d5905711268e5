// Attention, encoder layers and the encoder stack against the plain
// double-precision reference (support/reference.hpp), in this file's SIMD build.
#include <array>
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

// HF attention_mask [B, N]: sequence b keeps its first N - pad_b tokens, with
// pad_b cycling through 0, 2, 1, ... so padding of several lengths appears.
std::vector<int> padding_mask(rf::index_t batch, rf::index_t seq) {
  std::vector<int> mask(static_cast<std::size_t>(batch * seq), 1);
  for (rf::index_t b = 0; b < batch; ++b) {
    const rf::index_t pad = std::min<rf::index_t>(seq - 1, (b * 2) % 3);
    for (rf::index_t j = seq - pad; j < seq; ++j) mask[b * seq + j] = 0;
  }
  return mask;
}

struct shape {
  rf::index_t batch, seq, hidden, heads;
};

// Random parameters in T and the same values in double for the reference.
// Weights ~ N(0, 1/d) keep activations O(1), like a trained model's.
template <class T>
struct model {
  rf::encoder_parameters<T> params;
  rf::encoder_parameters<double> exact;

  explicit model(const rf::encoder_config& c, std::uint64_t seed) : params(c), exact(c) {
    params.fill_random(seed, 1.0 / std::sqrt(double(c.hidden_size)));
    exact.assign_from(params);
  }
};

rf::encoder_config config_for(const shape& s, rf::index_t layers = 1) {
  rf::encoder_config c;
  c.hidden_size = s.hidden;
  c.num_attention_heads = s.heads;
  c.intermediate_size = 2 * s.hidden + 3;  // not a multiple of any vector width
  c.num_hidden_layers = layers;
  return c;
}

}  // namespace

TEMPLATE_TEST_CASE("multi_head_attention matches the double reference", "[attention]", float, double) {
  using T = TestType;
  // Head sizes 8, 20, 64, 80, 32; sequences shorter and longer than one query
  // block (64 to 72 rows); one batch element of two heads and three blocks, which
  // two threads share by runs of query blocks within a head.
  const shape s = GENERATE(shape{1, 1, 32, 4}, shape{3, 5, 40, 2}, shape{2, 75, 128, 2}, shape{1, 67, 160, 2},
                           shape{2, 9, 24, 3}, shape{1, 150, 64, 2});
  const bool causal = GENERATE(false, true);
  const bool masked = GENERATE(false, true);
  const int threads = GENERATE(1, 2);
  CAPTURE(s.batch, s.seq, s.hidden, s.heads, causal, masked, threads);

  const rf::encoder_config c = config_for(s);
  const model<T> m(c, 42);
  const rf::multi_head_attention<T> attention(
      m.params.layers()[0].attention, {.hidden_size = s.hidden, .num_attention_heads = s.heads, .causal = causal});
  const std::vector<T> x = random_vector<T>(static_cast<std::size_t>(s.batch * s.seq * s.hidden), 7);
  std::vector<T> y(x.size());
  const std::vector<int> mask = masked ? padding_mask(s.batch, s.seq) : std::vector<int>{};

  auto ws = attention.make_workspace(s.batch, s.seq, threads);
  attention.forward(
      rf::tensor_view<const T, 3>(x.data(), {s.batch, s.seq, s.hidden}),
      rf::tensor_view<T, 3>(y.data(), {s.batch, s.seq, s.hidden}), ws,
      masked ? rf::attention_mask(rf::tensor_view<const int, 2>(mask.data(), {s.batch, s.seq})) : rf::attention_mask());

  const auto expected = reuseformer_test::reference::attention(std::vector<double>(x.begin(), x.end()), s.batch, s.seq,
                                                               s.heads, m.exact.layers()[0].attention, mask, causal)
                            .output;
  CHECK_CLOSE(compare(y, expected, tolerance<T>, tolerance<T>));
}

TEMPLATE_TEST_CASE("a query with no visible key gets a zero context", "[attention]", float, double) {
  using T = TestType;
  // Sequence 1 is all padding: its context is zero, so its output is the output
  // projection's bias alone; sequence 0 is unaffected.
  const shape s{2, 4, 16, 2};
  const model<T> m(config_for(s), 3);
  const auto weights = m.params.layers()[0].attention;
  const rf::multi_head_attention<T> attention(weights, {.hidden_size = s.hidden, .num_attention_heads = s.heads});
  const std::vector<T> x = random_vector<T>(2 * 4 * 16, 9);
  std::vector<T> y(x.size());
  const std::vector<std::int64_t> mask = {1, 1, 1, 0, 0, 0, 0, 0};
  auto ws = attention.make_workspace(2, 4);
  attention.forward(rf::tensor_view<const T, 3>(x.data(), {2, 4, 16}), rf::tensor_view<T, 3>(y.data(), {2, 4, 16}), ws,
                    rf::attention_mask(rf::tensor_view<const std::int64_t, 2>(mask.data(), {2, 4})));
  for (rf::index_t i = 0; i < 4; ++i)
    for (rf::index_t j = 0; j < 16; ++j) {
      const T value = y[static_cast<std::size_t>((4 + i) * 16 + j)];
      CHECK(!std::isnan(value));
      CHECK(value == weights.output.bias(j));
    }
}

TEMPLATE_TEST_CASE("encoder layers match the double reference", "[encoder]", float, double) {
  using T = TestType;
  const shape s = GENERATE(shape{2, 7, 32, 4}, shape{1, 70, 160, 2}, shape{3, 1, 40, 2});
  const auto norm = GENERATE(rf::norm_placement::post, rf::norm_placement::pre);
  const auto act = GENERATE(rf::activation::gelu, rf::activation::gelu_tanh, rf::activation::relu);
  const bool causal = GENERATE(false, true);
  const int threads = GENERATE(1, 2);
  CAPTURE(s.batch, s.seq, s.hidden, s.heads, norm == rf::norm_placement::pre, int(act), causal, threads);

  rf::encoder_config c = config_for(s, 3);
  c.norm = norm;
  c.hidden_act = act;
  c.causal = causal;
  c.layer_norm_eps = norm == rf::norm_placement::pre ? 1e-5 : 1e-12;
  const model<T> m(c, 11);
  const rf::encoder<T> encoder(c, m.params.layers());

  const std::vector<T> x = random_vector<T>(static_cast<std::size_t>(s.batch * s.seq * s.hidden), 5);
  std::vector<T> y(x.size());
  const std::vector<int> mask = padding_mask(s.batch, s.seq);
  auto ws = encoder.make_workspace(s.batch, s.seq, threads);
  encoder.forward(rf::tensor_view<const T, 3>(x.data(), {s.batch, s.seq, s.hidden}),
                  rf::tensor_view<T, 3>(y.data(), {s.batch, s.seq, s.hidden}), ws,
                  rf::attention_mask(rf::tensor_view<const int, 2>(mask.data(), {s.batch, s.seq})));

  const auto expected = reuseformer_test::reference::encoder(std::vector<double>(x.begin(), x.end()), s.batch, s.seq, c,
                                                             m.exact.layers(), mask);
  CHECK_CLOSE(compare(y, expected, tolerance<T>, tolerance<T>));
}

TEMPLATE_TEST_CASE("encoder_layer alone equals a one-layer encoder", "[encoder]", float, double) {
  using T = TestType;
  const shape s{2, 5, 24, 3};
  const rf::encoder_config c = config_for(s);
  const model<T> m(c, 5);
  const rf::encoder_layer<T> layer(c, m.params.layers()[0]);
  const rf::encoder<T> encoder(c, m.params.layers());
  const std::vector<T> x = random_vector<T>(2 * 5 * 24, 1);
  std::vector<T> a(x.size()), b(x.size());
  auto ws_layer = layer.make_workspace(2, 5);
  auto ws_encoder = encoder.make_workspace(2, 5);
  CHECK(ws_layer.size_bytes() == ws_encoder.size_bytes());
  layer.forward(rf::tensor_view<const T, 3>(x.data(), {2, 5, 24}), rf::tensor_view<T, 3>(a.data(), {2, 5, 24}),
                ws_layer);
  encoder.forward(rf::tensor_view<const T, 3>(x.data(), {2, 5, 24}), rf::tensor_view<T, 3>(b.data(), {2, 5, 24}),
                  ws_encoder);
  CHECK(a == b);
}

TEST_CASE("forward in place, with a larger workspace, and on 2 threads gives the same result", "[encoder]") {
  const shape s{2, 70, 64, 4};
  const rf::encoder_config c = config_for(s, 2);
  const model<float> m(c, 8);
  const rf::encoder<float> encoder(c, m.params.layers());
  const std::vector<float> x = random_vector<float>(2 * 70 * 64, 2);
  const rf::tensor_view<const float, 3> in(x.data(), {2, 70, 64});

  std::vector<float> reference(x.size());
  auto ws = encoder.make_workspace(2, 70);
  encoder.forward(in, rf::tensor_view<float, 3>(reference.data(), {2, 70, 64}), ws);

  SECTION("in place: output is the input buffer") {
    std::vector<float> inout = x;
    encoder.forward(rf::tensor_view<const float, 3>(inout.data(), {2, 70, 64}),
                    rf::tensor_view<float, 3>(inout.data(), {2, 70, 64}), ws);
    CHECK(inout == reference);
  }
  SECTION("a workspace made for a larger batch serves a smaller one") {
    auto big = encoder.make_workspace(4, 100);
    CHECK(big.size_bytes() > ws.size_bytes());
    std::vector<float> y(x.size());
    encoder.forward(in, rf::tensor_view<float, 3>(y.data(), {2, 70, 64}), big);
    CHECK(y == reference);
  }
  SECTION("two threads agree with one to float rounding") {
    auto ws2 = encoder.make_workspace(2, 70, 2);
    std::vector<float> y(x.size());
    encoder.forward(in, rf::tensor_view<float, 3>(y.data(), {2, 70, 64}), ws2);
    CHECK_CLOSE(compare(y, reference, 1e-5, 1e-5));
  }
}

TEST_CASE("workspace size is exact and grows as the plan says", "[workspace]") {
  const rf::encoder_config c = config_for(shape{1, 1, 64, 4}, 2);
  rf::encoder_parameters<float> p(c);
  const rf::encoder<float> encoder(c, p.layers());
  const rf::index_t d = 64, d_ff = c.intermediate_size;
  // Counted by hand, in whole cache lines of floats: the additive mask [N]; then,
  // for one post-LN layer at a time (layers share the bytes, and within a layer
  // the feed-forward's temporaries share the attention's), the larger of
  //   attention:    Q, K, V [N, 3d] and the context [N, d], plus per thread the
  //                 largest of its products' packing (k = d) and its core's scratch
  //   feed-forward: the hidden [N, d_ff], plus per thread the packing of its
  //                 products (k = d and k = d_ff).
  const auto line = [](rf::index_t elements) { return rf::round_to_line<float>(elements); };
  const auto by_hand = [&](rf::index_t n, int threads) {
    const rf::attention::problem core{rf::sequences::dense(1, n), 4, 16, false, 4};
    const rf::index_t attention = line(n * 3 * d) + line(n * d) +
                                  threads * line(std::max(rf::gemm::prepacked_scratch_elements<float>(d),
                                                          rf::attention::scratch_elements<float>(core)));
    const rf::index_t feed_forward =
        line(n * d_ff) + threads * line(std::max(rf::gemm::prepacked_scratch_elements<float>(d),
                                                 rf::gemm::prepacked_scratch_elements<float>(d_ff)));
    return static_cast<std::size_t>(line(n) + std::max(attention, feed_forward)) * sizeof(float);
  };
  for (const rf::index_t n : {16, 256})
    for (const int threads : {1, 2}) {
      CAPTURE(n, threads);
      CHECK(encoder.workspace_bytes(1, n, threads) == by_hand(n, threads));
      CHECK(encoder.make_workspace(1, n, threads).size_bytes() == by_hand(n, threads));
    }
  // The score slice (min(64, N) x N per thread) and the activations grow with N.
  CHECK(encoder.workspace_bytes(1, 256) > encoder.workspace_bytes(1, 16));
  CHECK(encoder.workspace_bytes(1, 16, 2) > encoder.workspace_bytes(1, 16));
}

TEST_CASE("GEMM scratch covers every block shape (last and causal query blocks)", "[attention][workspace]") {
  // Shapes where the last or causal query blocks once wanted more packing space
  // than the first full block planned for (found with AddressSanitizer).
  struct scratch_case {
    rf::index_t hidden, seq;
    bool causal;
  };
  const scratch_case sc = GENERATE(scratch_case{64, 344, true}, scratch_case{64, 700, true},
                                   scratch_case{32, 700, false}, scratch_case{16, 550, false});
  const int threads = GENERATE(1, 2);
  CAPTURE(sc.hidden, sc.seq, sc.causal, threads);
  const shape s{1, sc.seq, sc.hidden, 1};
  const model<float> m(config_for(s), 13);
  const rf::multi_head_attention<float> attention(
      m.params.layers()[0].attention, {.hidden_size = s.hidden, .num_attention_heads = 1, .causal = sc.causal});
  const std::vector<float> x = random_vector<float>(static_cast<std::size_t>(s.seq * s.hidden), 17);
  std::vector<float> y(x.size());
  auto ws = attention.make_workspace(1, s.seq, threads);
  attention.forward(rf::tensor_view<const float, 3>(x.data(), {1, s.seq, s.hidden}),
                    rf::tensor_view<float, 3>(y.data(), {1, s.seq, s.hidden}), ws);
  const auto expected = reuseformer_test::reference::attention(std::vector<double>(x.begin(), x.end()), 1, s.seq, 1,
                                                               m.exact.layers()[0].attention, {}, sc.causal)
                            .output;
  CHECK_CLOSE(compare(y, expected, tolerance<float>, tolerance<float>));
}

TEST_CASE("workspace size never decreases with the sequence length or the batch", "[workspace]") {
  rf::encoder_config c;  // BERT-base shapes, one layer (sizes only: weights stay zero)
  c.num_hidden_layers = 1;
  rf::encoder_parameters<float> p(c);
  const rf::encoder<float> model(c, p.layers());
  for (const int threads : {1, 2, 8}) {
    std::size_t previous = 0;
    for (rf::index_t seq = 400; seq <= 520; ++seq) {
      const std::size_t bytes = model.workspace_bytes(1, seq, threads);
      CAPTURE(threads, seq);
      CHECK(bytes >= previous);
      previous = bytes;
    }
    CHECK(model.workspace_bytes(2, 472, threads) >= model.workspace_bytes(1, 472, threads));
  }
}

TEMPLATE_TEST_CASE("linear: fused bias, activation, residual and LayerNorm equal the separate passes", "[linear]",
                   float, double) {
  using T = TestType;
  // Odd sizes (no multiple of any vector width or tile), row and column splits
  // on 2 threads, and a stacked layer (two parts) like query | value.
  for (const auto& [rows, in, out] : std::vector<std::array<rf::index_t, 3>>{{5, 7, 9}, {131, 37, 67}, {29, 70, 613}}) {
    for (const int threads : {1, 2}) {
      CAPTURE(rows, in, out, threads);
      const rf::index_t cut = out / 3;
      const std::vector<T> x = random_vector<T>(rows * in, 1), w = random_vector<T>(out * in, 2),
                           bias = random_vector<T>(out, 3), stream0 = random_vector<T>(rows * out, 4),
                           gamma = random_vector<T>(out, 5), beta = random_vector<T>(out, 6);
      const rf::linear_weights<T> first{rf::matrix_view<const T>(w.data(), {cut, in}),
                                        rf::vector_view<const T>(bias.data(), {cut})};
      const rf::linear_weights<T> second{rf::matrix_view<const T>(w.data() + cut * in, {out - cut, in}),
                                         rf::vector_view<const T>(bias.data() + cut, {out - cut})};
      const rf::linear<T> layer({{first, cut, "first"}, {second, out - cut, "second"}}, in);
      const rf::layer_norm<T> norm(
          {rf::vector_view<const T>(gamma.data(), {out}), rf::vector_view<const T>(beta.data(), {out})}, out, 1e-5,
          "norm");
      const rf::index_t stride = rf::round_to_line<T>(rf::gemm::scratch_elements<T>(rows, out, in));
      rf::workspace ws(static_cast<std::size_t>(stride * threads) * sizeof(T), threads);
      rf::arena arena = ws.make_arena();
      T* const scratch = arena.take<T>(stride * threads);
      const rf::gemm::matrix<const T> input{x.data(), rows, in, in};

      // Separate passes: the product, then bias and activation, then LayerNorm.
      std::vector<T> separate = stream0;
      rf::gemm::parallel_multiply_add<T>(T(1), input, {w.data(), out, in, in}, rf::gemm::transpose::yes,
                                         {separate.data(), rows, out, out}, rf::gemm::update::overwrite,
                                         {scratch, stride, threads});
      rf::simd::bias_activation<rf::simd::gelu_erf>(separate.data(), rows, out, out, bias.data());
      std::vector<T> fused = stream0;
      layer.template forward<rf::simd::gelu_erf>(input, {fused.data(), rows, out, out}, rf::gemm::update::overwrite,
                                                 {scratch, stride, threads});
      CHECK(fused == separate);

      // Residual: stream += x Wᵀ + b, then LayerNorm of the stream, in place.
      separate = stream0;
      rf::gemm::parallel_multiply_add<T>(T(1), input, {w.data(), out, in, in}, rf::gemm::transpose::yes,
                                         {separate.data(), rows, out, out}, rf::gemm::update::accumulate,
                                         {scratch, stride, threads});
      rf::simd::bias_activation<rf::simd::identity>(separate.data(), rows, out, out, bias.data());
      norm.forward(separate.data(), separate.data(), rows, threads);
      fused = stream0;
      layer.forward(
          input, {fused.data(), rows, out, out}, rf::gemm::update::accumulate, {scratch, stride, threads},
          [&](rf::index_t row, rf::index_t count) { norm.forward_rows(fused.data(), fused.data(), row, count); });
      CHECK(fused == separate);
    }
  }
}
