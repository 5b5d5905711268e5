// Score functions (docs/semantics.md §Symmetric and pairwise scores) at
// BERT-base head shapes (H = 12, dh = 64, float):
//   score_stage/<kind>   the logits of every head alone (attention::logits), batch 1:
//                        standard Q Kᵀ, symmetric Q Qᵀ (one triangle + mirror), and
//                        general pairwise (the Q P transform, then a full product);
//   attention_stage/<kind> the same with softmax and A V (attention::scaled_dot_product):
//                        the softmax is the same for every kind, which a saving
//                        counted in multiply-adds leaves out;
//   encoder_layer/<kind> one whole BERT-base encoder layer per score function,
//                        with its parameter and workspace bytes.
// Compare kinds by the ratio of their times in one run; with
// --benchmark_repetitions=R --benchmark_enable_random_interleaving=true the
// cases interleave, which keeps a noisy machine's drift out of the ratios.
#include "support/counters.hpp"

#include <reuseformer/reuseformer.hpp>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstddef>
#include <memory>
#include <vector>

namespace rf = reuseformer;

namespace {

constexpr rf::index_t heads = 12, head_dim = 64, width = heads * head_dim;

// Logits of all heads for one [1, N, d] sequence: the score stage and nothing
// else, or (WithContext) the whole attention core: softmax and A V as well.
template <rf::score_function Score, bool WithContext = false>
void score_stage(benchmark::State& state) {
  const rf::index_t seq = state.range(0);
  const bool causal = state.range(1) != 0;
  const int threads = static_cast<int>(state.range(2));
  const rf::attention::problem p{rf::sequences::dense(1, seq),   heads, head_dim, causal, heads,
                                 rf::has_symmetric_logits(Score)};
  std::vector<float> q(static_cast<std::size_t>(seq * width)), transformed(q.size());
  for (std::size_t i = 0; i < q.size(); ++i) q[i] = static_cast<float>((i * 7919 % 1000) / 500.0 - 1.0);
  std::vector<float> factors(static_cast<std::size_t>(heads * head_dim * head_dim), 0.01f);
  // Logits rows padded by one cache line, as the attention core keeps a head's [N, N].
  const rf::index_t ld = seq + 16;
  std::vector<float> logits(static_cast<std::size_t>(heads * seq * ld)), context(q.size());
  const rf::index_t stride = rf::round_to_line<float>(std::max(
      rf::attention::scratch_elements<float>(p), rf::attention::pairwise_scratch_elements<float>(seq, head_dim)));
  rf::workspace ws(static_cast<std::size_t>(stride * threads) * sizeof(float), threads);
  float* scratch = ws.make_arena().take<float>(stride * threads);

  rf::attention::head_io<float> io;
  io.q = io.k = {q.data(), seq, width, width};
  const auto run = [&] {
    if constexpr (Score == rf::score_function::pairwise) {  // (Q P) Qᵀ
      rf::attention::apply_pairwise_factors<float>(io.k, factors.data(), heads, head_dim, false,
                                                   {transformed.data(), seq, width, width}, {scratch, stride, threads});
      io.q = {transformed.data(), seq, width, width};
    }
    if constexpr (WithContext)  // the queries serve as values: the cost does not depend on them
      rf::attention::scaled_dot_product<float>(p, 0.125f, io, {q.data(), seq, width, width},
                                               {context.data(), seq, width, width}, nullptr,
                                               {scratch, stride, threads});
    else
      rf::attention::logits<float>(p, io, logits.data(), ld, {scratch, stride, threads});
  };
  run();  // warm-up: page faults, thread start
  for (auto _ : state) {
    run();
    benchmark::DoNotOptimize(WithContext ? context.data() : logits.data());
    benchmark::ClobberMemory();
  }
  // A V multiplies every probability the query blocks compute, as standard logits do.
  double pairs = static_cast<double>(rf::attention::logit_pairs<float>(seq, causal, p.symmetric_logits));
  if (WithContext) pairs += static_cast<double>(rf::attention::logit_pairs<float>(seq, causal, false));
  reuseformer_bench::add_rate_counters(state, heads * pairs * head_dim, threads);
}

const rf::encoder_parameters<float>& layer_parameters(rf::score_function score) {
  static std::vector<std::unique_ptr<rf::encoder_parameters<float>>> cache(5);
  auto& p = cache[static_cast<std::size_t>(score)];
  if (!p) {
    rf::encoder_config c;  // the defaults are BERT-base
    c.num_hidden_layers = 1;
    c.score = score;
    p = std::make_unique<rf::encoder_parameters<float>>(c);
    p->fill_random(2024);
  }
  return *p;
}

// One BERT-base encoder layer with score function Score, batch x seq, no padding.
template <rf::score_function Score>
void encoder_layer(benchmark::State& state) {
  const rf::encoder_parameters<float>& parameters = layer_parameters(Score);
  const rf::encoder<float, Score> model(parameters.config(), parameters.layers());
  const rf::index_t batch = state.range(0), seq = state.range(1), d = model.hidden_size();
  const int threads = static_cast<int>(state.range(2));
  std::vector<float> input(static_cast<std::size_t>(batch * seq * d)), output(input.size());
  for (std::size_t i = 0; i < input.size(); ++i) input[i] = static_cast<float>((i * 7919 % 1000) / 500.0 - 1.0);
  rf::workspace ws = model.make_workspace(batch, seq, threads);
  const auto forward = [&] {
    model.forward(rf::tensor_view<const float, 3>(input.data(), {batch, seq, d}),
                  rf::tensor_view<float, 3>(output.data(), {batch, seq, d}), ws);
  };
  forward();
  for (auto _ : state) {
    forward();
    benchmark::DoNotOptimize(output.data());
    benchmark::ClobberMemory();
  }
  const auto cost = rf::analysis::measure(model, batch, seq, threads);
  reuseformer_bench::add_rate_counters(state, cost.multiply_adds, threads);
  state.counters["parameter_bytes"] = benchmark::Counter(static_cast<double>(cost.parameter_bytes));
  state.counters["workspace_bytes"] = benchmark::Counter(static_cast<double>(cost.workspace_bytes));
}

void score_shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"seq", "causal", "threads"})->ArgsProduct({{128, 512, 2048}, {0, 1}, {1, 2}});
  b->UseRealTime()->Unit(benchmark::kMicrosecond);
}
void layer_shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"batch", "seq", "threads"})->ArgsProduct({{1}, {128, 512}, {1, 2}});
  b->UseRealTime()->Unit(benchmark::kMillisecond);
}

using enum rf::score_function;
BENCHMARK(score_stage<standard>)->Name("score_stage/standard")->Apply(score_shapes);
BENCHMARK(score_stage<symmetric>)->Name("score_stage/symmetric")->Apply(score_shapes);
BENCHMARK(score_stage<pairwise>)->Name("score_stage/pairwise")->Apply(score_shapes);
BENCHMARK(score_stage<standard, true>)->Name("attention_stage/standard")->Apply(score_shapes);
BENCHMARK(score_stage<symmetric, true>)->Name("attention_stage/symmetric")->Apply(score_shapes);
BENCHMARK(encoder_layer<standard>)->Name("encoder_layer/standard")->Apply(layer_shapes);
BENCHMARK(encoder_layer<symmetric>)->Name("encoder_layer/symmetric")->Apply(layer_shapes);
BENCHMARK(encoder_layer<pairwise>)->Name("encoder_layer/pairwise")->Apply(layer_shapes);
BENCHMARK(encoder_layer<pairwise_symmetric>)->Name("encoder_layer/pairwise_symmetric")->Apply(layer_shapes);

}  // namespace

BENCHMARK_MAIN();
