// The kernels a BERT-base encoder layer (d = 768, H = 12, d_ff = 3072) spends its
// time in, one at a time, in float, at the shapes the layer gives them
// (single-threaded and for 128 tokens unless said otherwise):
//   softmax_rows    one attention task's score slice: query_block rows of N keys
//   layer_norm_rows 128 rows of 768
//   bias_gelu_*     the FFN's intermediate activation, [128, 3072]
//   gemm/*          one head's score and context products (op(B) packed per call)
//   linear*/        the layer's weight products as its Linears run them (prepacked
//                   weights, epilogue), for 128 to 1024 tokens on 1 and 2 threads
//   eigen_linear*/  the same products on the Eigen backend (eigen::products:
//                   Eigen's sequential GEMM under the same thread split), the
//                   baseline for the rows above
//   bf16_linear*/   the same products on bfloat16 weights (bf16_products),
//                   %peak against the measured vdpbf16ps peak (peak_bf16.hpp)
//   int8_linear*/   the same products on int8 weights (int8_products), in
//                   GOP/s, %peak against the measured vpdpbusd peak (peak_int8.hpp)
#include "support/counters.hpp"

#include <reuseformer/eigen.hpp>
#include <reuseformer/reuseformer.hpp>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <limits>
#include <type_traits>
#include <random>
#include <vector>

namespace rf = reuseformer;

namespace {

std::vector<float> random_values(rf::index_t count, unsigned seed) {
  std::mt19937 bits(seed);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::vector<float> values(static_cast<std::size_t>(count));
  for (float& v : values) v = uniform(bits);
  return values;
}

// Items are the elements transformed; bytes are one read and one write of each,
// the least memory traffic any implementation of the kernel needs.
void count_elements(benchmark::State& state, rf::index_t elements) {
  state.SetItemsProcessed(state.iterations() * elements);
  state.SetBytesProcessed(state.iterations() * elements * 2 * rf::index_t(sizeof(float)));
}

// Row softmax with the attention scale and a key-padding mask whose last eighth
// of keys is -inf. Runs in place again and again: outputs are probabilities, so
// the next pass sees finite inputs of the same kind and the masked keys stay -inf.
void softmax_rows(benchmark::State& state) {
  const rf::index_t keys = state.range(0), rows = rf::attention::query_block<float>;
  std::vector<float> scores = random_values(rows * keys, 1);
  std::vector<float> mask(static_cast<std::size_t>(keys), 0.0f);
  std::fill(mask.end() - keys / 8, mask.end(), -std::numeric_limits<float>::infinity());
  const float scale = 0.125f;  // 1/sqrt(dh), dh = 64
  for (auto _ : state) {
    for (rf::index_t i = 0; i < rows; ++i) rf::simd::softmax(scores.data() + i * keys, keys, keys, scale, mask.data());
    benchmark::DoNotOptimize(scores.data());
    benchmark::ClobberMemory();
  }
  count_elements(state, rows * keys);
}
BENCHMARK(softmax_rows)->ArgName("N")->Arg(128)->Arg(512)->Arg(2048);

void layer_norm_rows(benchmark::State& state) {
  const rf::index_t rows = 128, d = 768;
  const std::vector<float> x = random_values(rows * d, 2);
  std::vector<float> y(x.size());
  const std::vector<float> gamma(static_cast<std::size_t>(d), 1.0f), beta(static_cast<std::size_t>(d), 0.0f);
  for (auto _ : state) {
    for (rf::index_t i = 0; i < rows; ++i)
      rf::simd::layer_norm(x.data() + i * d, y.data() + i * d, d, gamma.data(), beta.data(), 1e-12f);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  count_elements(state, rows * d);
}
BENCHMARK(layer_norm_rows);

// Applied in place again and again: with a nonzero bias each value settles at a
// fixed point near its column's bias, never in the denormal range (which would
// slow the maths down), and the columns keep a spread of values across the
// erf/tanh approximation's ranges.
template <class Act>
void bias_gelu(benchmark::State& state) {
  const rf::index_t rows = 128, cols = 3072;
  std::vector<float> x = random_values(rows * cols, 3);
  const std::vector<float> bias = random_values(cols, 4);
  for (auto _ : state) {
    rf::simd::bias_activation<Act>(x.data(), rows, cols, cols, bias.data());
    benchmark::DoNotOptimize(x.data());
    benchmark::ClobberMemory();
  }
  count_elements(state, rows * cols);
}
BENCHMARK(bias_gelu<rf::simd::gelu_erf>)->Name("bias_gelu_erf");
BENCHMARK(bias_gelu<rf::simd::gelu_tanh>)->Name("bias_gelu_tanh");

// C[m, n] += A[m, k] * op(B) on one thread, op(B) packed on every call, as the
// attention core calls it for a head. C accumulates over the iterations; the
// kernel's cost does not depend on the values.
void gemm(benchmark::State& state, rf::index_t m, rf::index_t n, rf::index_t k, rf::gemm::transpose op_b) {
  const std::vector<float> a = random_values(m * k, 5), b = random_values(k * n, 6);
  std::vector<float> c(static_cast<std::size_t>(m * n), 0.0f);
  // A workspace gives the 64-byte alignment the packing buffers need.
  const rf::index_t scratch_elements = rf::gemm::scratch_elements<float>(m, n, k);
  rf::workspace ws(static_cast<std::size_t>(scratch_elements) * sizeof(float), 1);
  rf::arena arena = ws.make_arena();
  float* const scratch = arena.take<float>(scratch_elements);
  const rf::gemm::matrix<const float> a_view{a.data(), m, k, k};
  const rf::gemm::matrix<const float> b_view = op_b == rf::gemm::transpose::yes
                                                   ? rf::gemm::matrix<const float>{b.data(), n, k, k}
                                                   : rf::gemm::matrix<const float>{b.data(), k, n, n};
  const rf::gemm::matrix<float> c_view{c.data(), m, n, n};
  for (auto _ : state) {
    rf::gemm::multiply_add(1.0f, a_view, b_view, op_b, c_view, rf::gemm::update::accumulate, scratch);
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  reuseformer_bench::add_rate_counters(state, static_cast<double>(m * n * k), 1);
}
// [64, 64]·[512, 64]ᵀ: one head's scores for a block of 64 queries, N = 512.
BENCHMARK_CAPTURE(gemm, head_scores, 64, 512, 64, rf::gemm::transpose::yes);
// [64, 512]·[512, 64]: the same block's probabilities times the head's values.
BENCHMARK_CAPTURE(gemm, head_context, 64, 64, 512, rf::gemm::transpose::no);

// x[m, k] · Wᵀ, W [n, k], as a layer's Linear runs it on the Products backend
// (by default prepacked): on `threads` threads, bias (and, for the FFN
// intermediate, GELU) applied by the epilogue.
// Weights and activations of a BERT-base layer for m tokens.
template <class Act, class Products = rf::packed_products>
void weight_product(benchmark::State& state) {
  const rf::index_t m = state.range(0), n = state.range(1), k = state.range(2);
  const int threads = static_cast<int>(state.range(3));
  const std::vector<float> x = random_values(m * k, 5), w = random_values(n * k, 6), bias = random_values(n, 7);
  std::vector<float> y(static_cast<std::size_t>(m * n), 0.0f);
  const rf::linear_weights<float> weights{rf::matrix_view<const float>(w.data(), {n, k}),
                                          rf::vector_view<const float>(bias.data(), {n})};
  const rf::linear<float, rf::simd::default_arch, Products> layer(weights, k, n, "bench");
  const rf::index_t stride = rf::round_to_line<float>(layer.scratch_elements());
  rf::workspace ws(static_cast<std::size_t>(stride * threads) * sizeof(float), threads);
  rf::arena arena = ws.make_arena();
  float* const scratch = arena.take<float>(stride * threads);
  for (auto _ : state) {
    layer.template forward<Act>({x.data(), m, k, k}, {y.data(), m, n, n}, rf::gemm::update::overwrite,
                                {scratch, stride, threads});
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  if constexpr (std::is_same_v<Products, rf::int8_products>)
    reuseformer_bench::add_int8_rate_counters(state, static_cast<double>(m * n * k), threads);
  else
    reuseformer_bench::add_rate_counters(state, static_cast<double>(m * n * k), threads,
                                         std::is_same_v<Products, rf::bf16_products>);
}
// Rows: 128 and 512 tokens (batch 1), 1024 (8 x 128); columns: the fused
// query|key|value projection (2304), the output projection (768), the FFN
// intermediate (3072, with GELU) and output (768, inner 3072).
void weight_shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"m", "n", "k", "threads"});
  for (const rf::index_t m : {128, 512, 1024})
    for (const int threads : {1, 2}) {
      b->Args({m, 2304, 768, threads});
      b->Args({m, 768, 768, threads});
      b->Args({m, 768, 3072, threads});
    }
  b->UseRealTime();
}
// The FFN intermediate with its GELU epilogue.
void gelu_shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"m", "n", "k", "threads"})->ArgsProduct({{128, 512, 1024}, {3072}, {768}, {1, 2}})->UseRealTime();
}
BENCHMARK(weight_product<rf::simd::identity>)->Name("linear")->Apply(weight_shapes);
BENCHMARK(weight_product<rf::simd::gelu_erf>)->Name("linear_gelu")->Apply(gelu_shapes);
BENCHMARK(weight_product<rf::simd::identity, rf::eigen::products>)->Name("eigen_linear")->Apply(weight_shapes);
BENCHMARK(weight_product<rf::simd::gelu_erf, rf::eigen::products>)->Name("eigen_linear_gelu")->Apply(gelu_shapes);
BENCHMARK(weight_product<rf::simd::identity, rf::bf16_products>)->Name("bf16_linear")->Apply(weight_shapes);
BENCHMARK(weight_product<rf::simd::gelu_erf, rf::bf16_products>)->Name("bf16_linear_gelu")->Apply(gelu_shapes);
BENCHMARK(weight_product<rf::simd::identity, rf::int8_products>)->Name("int8_linear")->Apply(weight_shapes);
BENCHMARK(weight_product<rf::simd::gelu_erf, rf::int8_products>)->Name("int8_linear_gelu")->Apply(gelu_shapes);

}  // namespace

BENCHMARK_MAIN();
