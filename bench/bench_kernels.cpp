// The kernels a BERT-base encoder layer (d = 768, H = 12, d_ff = 3072) spends its
// time in, one at a time, in float, single-threaded, at the shapes the layer
// gives them for 128 tokens:
//   softmax_rows    one attention task's score slice: query_block rows of N keys
//   layer_norm_rows 128 rows of 768
//   bias_gelu_*     the FFN's intermediate activation, [128, 3072]
//   gemm/*          every matrix product of the layer
#include "support/counters.hpp"

#include <reuseformer/reuseformer.hpp>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <limits>
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
    for (rf::index_t i = 0; i < rows; ++i)
      rf::simd::softmax(scores.data() + i * keys, keys, keys, scale, mask.data());
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

// C[m, n] += A[m, k] * op(B) on one thread, as the layers call it. C accumulates
// over the iterations; the kernel's cost does not depend on the values.
void gemm(benchmark::State& state, rf::index_t m, rf::index_t n, rf::index_t k,
          rf::gemm::transpose op_b) {
  const std::vector<float> a = random_values(m * k, 5), b = random_values(k * n, 6);
  std::vector<float> c(static_cast<std::size_t>(m * n), 0.0f);
  // A workspace gives the 64-byte alignment the packing buffers need on every
  // instruction set (Eigen's aligned_allocator only aligns to the widest vector).
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
    rf::gemm::multiply_add(1.0f, a_view, b_view, op_b, c_view, scratch);
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  reuseformer_bench::add_rate_counters(state, static_cast<double>(m * n * k), 1);
}
constexpr auto transposed = rf::gemm::transpose::yes;
// [128, 768]·[768, 768]ᵀ: each of the Q, K, V and output projections.
BENCHMARK_CAPTURE(gemm, q_k_v_o_projection, 128, 768, 768, transposed);
// [128, 768]·[3072, 768]ᵀ: FFN intermediate.
BENCHMARK_CAPTURE(gemm, ffn_intermediate, 128, 3072, 768, transposed);
// [128, 3072]·[768, 3072]ᵀ: FFN output.
BENCHMARK_CAPTURE(gemm, ffn_output, 128, 768, 3072, transposed);
// [64, 64]·[512, 64]ᵀ: one head's scores for a block of 64 queries, N = 512.
BENCHMARK_CAPTURE(gemm, head_scores, 64, 512, 64, transposed);
// [64, 512]·[512, 64]: the same block's probabilities times the head's values.
BENCHMARK_CAPTURE(gemm, head_context, 64, 64, 512, rf::gemm::transpose::no);

}  // namespace

BENCHMARK_MAIN();
