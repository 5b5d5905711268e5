// One BERT-base encoder layer (d = 768, H = 12, d_ff = 3072, post-LN, float)
// forward pass, and its multi-head attention alone, for batch {1, 8} x seq
// {128, 512} on {1, 2} threads; and the whole 12-layer encoder with K heads
// reused by layers 1-11 (K = 0: vanilla). Times are wall-clock (UseRealTime):
// the worker threads' CPU time is invisible to the benchmark's per-thread CPU
// clock. Counters: GFLOP/s from the cost model's multiply-adds, the percentage
// of the machine's peak (measured at start-up, support/peak_fma.hpp, times the
// thread count), parameter and workspace bytes.
#include "support/counters.hpp"

#include <reuseformer/reuseformer.hpp>

#include <benchmark/benchmark.h>

#include <cstddef>
#include <vector>

namespace rf = reuseformer;

namespace {

rf::encoder_config bert_base_layer_config() {
  rf::encoder_config config;  // the defaults are BERT-base
  config.num_hidden_layers = 1;
  return config;
}

// Built once for all cases: filling 7M random parameters takes longer than a
// forward pass, and the library calls each benchmark function several times.
const rf::encoder_parameters<float>& bert_base_layer_parameters() {
  static const rf::encoder_parameters<float> parameters = [] {
    rf::encoder_parameters<float> p(bert_base_layer_config());
    p.fill_random(/*seed=*/2024);  // N(0, 0.02), BERT's initialiser
    return p;
  }();
  return parameters;
}

// Times model.forward on a [B, N, d] input (no padding) with a workspace made
// once, outside the timed loop, and reports GFLOP/s from `multiply_adds` per pass.
template <class Model>
void run_forward(benchmark::State& state, const Model& model, double multiply_adds) {
  const rf::index_t batch = state.range(0), seq = state.range(1), d = model.hidden_size();
  const int threads = static_cast<int>(state.range(2));
  std::vector<float> input(static_cast<std::size_t>(batch * seq * d)), output(input.size());
  for (std::size_t i = 0; i < input.size(); ++i)
    input[i] = static_cast<float>((i * 7919 % 1000) / 500.0 - 1.0);
  rf::workspace ws = model.make_workspace(batch, seq, threads);
  const auto forward = [&] {
    model.forward(rf::tensor_view<const float, 3>(input.data(), {batch, seq, d}),
                  rf::tensor_view<float, 3>(output.data(), {batch, seq, d}), ws);
  };
  forward();  // untimed warm-up: page faults in the fresh workspace, OpenMP thread start
  for (auto _ : state) {
    forward();
    benchmark::DoNotOptimize(output.data());
    benchmark::ClobberMemory();
  }
  reuseformer_bench::add_rate_counters(state, multiply_adds, threads);
  const auto bytes = [](std::size_t count) {
    return benchmark::Counter(static_cast<double>(count), benchmark::Counter::kDefaults,
                              benchmark::Counter::kIs1024);
  };
  state.counters["workspace_bytes"] = bytes(ws.size_bytes());
  state.counters["parameter_bytes"] = bytes(model.parameter_bytes());
}

// Multiply-adds of Q, K, V and output projections (rows x 4 d^2) plus Q·Kᵀ and
// A·V (2 B N^2 d), as examples/bert_base_encoder.cpp counts them.
double attention_multiply_adds(const benchmark::State& state, double d) {
  const double batch = static_cast<double>(state.range(0)), seq = static_cast<double>(state.range(1));
  return batch * seq * 4 * d * d + 2 * batch * seq * seq * d;
}

void encoder_layer(benchmark::State& state) {
  const rf::encoder_config config = bert_base_layer_config();
  const rf::encoder<float> model(config, bert_base_layer_parameters().layers());
  const double d = static_cast<double>(config.hidden_size);
  const double rows = static_cast<double>(state.range(0) * state.range(1));
  const double d_ff = static_cast<double>(config.intermediate_size);
  // The attention plus the FFN's two products (rows x 2 d d_ff).
  run_forward(state, model, attention_multiply_adds(state, d) + rows * 2 * d * d_ff);
}

void multi_head_attention(benchmark::State& state) {
  const rf::encoder_config config = bert_base_layer_config();
  // The options an encoder gives its layer 0: no reuse, no relative-position bias.
  const rf::multi_head_attention<float> attention(bert_base_layer_parameters().layers().front().attention,
                                                  rf::encoder_layer<float>::attention_options_for(config, 0));
  run_forward(state, attention, attention_multiply_adds(state, static_cast<double>(config.hidden_size)));
}

// The 12-layer encoder, K heads reused by layers 1-11 (the reference schedule).
void encoder(benchmark::State& state) {
  rf::encoder_config config;  // BERT-base
  config.reuse_schedule = rf::reference_reuse_schedule(state.range(3), 11, config.num_attention_heads,
                                                       config.num_hidden_layers);
  rf::encoder_parameters<float> parameters(config);
  parameters.fill_random(2024);
  const rf::encoder<float> model(config, parameters.layers());
  const rf::index_t batch = state.range(0), seq = state.range(1);
  run_forward(state, model, rf::analysis::cost<float>(config, batch, seq).multiply_adds);
}

void shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"batch", "seq", "threads"})->ArgsProduct({{1, 8}, {128, 512}, {1, 2}});
  b->UseRealTime()->Unit(benchmark::kMillisecond);
}
BENCHMARK(encoder_layer)->Apply(shapes);
BENCHMARK(multi_head_attention)->Apply(shapes);
BENCHMARK(encoder)
    ->ArgNames({"batch", "seq", "threads", "K"})
    ->ArgsProduct({{1}, {128}, {1, 2}, {0, 6, 12}})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
