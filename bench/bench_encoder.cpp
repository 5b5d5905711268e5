// One BERT-base encoder layer (d = 768, H = 12, d_ff = 3072, post-LN, float)
// forward pass, its multi-head attention alone and its stages one by one, for
// batch {1, 8} x seq {128, 512} on {1, 2} threads; and the whole 12-layer
// encoder with K heads reused by layers 1-11 (K = 0: vanilla). Times are wall-clock (UseRealTime):
// the worker threads' CPU time is invisible to the benchmark's per-thread CPU
// clock. Counters: GFLOP/s from the cost model's multiply-adds, the percentage
// of the machine's peak (measured at start-up, support/peak_fma.hpp, times the
// thread count), parameter and workspace bytes.
#include "support/counters.hpp"

#include <reuseformer/reuseformer.hpp>

#include <benchmark/benchmark.h>

#include <algorithm>
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
  for (std::size_t i = 0; i < input.size(); ++i) input[i] = static_cast<float>((i * 7919 % 1000) / 500.0 - 1.0);
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
    return benchmark::Counter(static_cast<double>(count), benchmark::Counter::kDefaults, benchmark::Counter::kIs1024);
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
  config.reuse_schedule =
      rf::reference_reuse_schedule(state.range(3), 11, config.num_attention_heads, config.num_hidden_layers);
  rf::encoder_parameters<float> parameters(config);
  parameters.fill_random(2024);
  const rf::encoder<float> model(config, parameters.layers());
  const rf::index_t batch = state.range(0), seq = state.range(1);
  run_forward(state, model, rf::analysis::cost<float>(config, batch, seq).multiply_adds);
}

// The stages of one BERT-base layer, each timed alone on the shapes and buffers
// the layer gives it, for the per-stage breakdown of a forward pass:
//   0 projection   x [B*N, d] -> Q | K | V [B*N, 3d], one prepacked product, bias
//   1 scores       Q_h K_hᵀ of every head and query block (attention::logits)
//   2 attention    scores, softmax and A V together (attention::scaled_dot_product)
//   3 output       context W_Oᵀ + b added to the stream, LayerNorm as rows complete
//   4 ffn          act(x W_1ᵀ + b_1) W_2ᵀ + b_2 added to the stream, LayerNorm
//   5 layer norm   one separate LayerNorm pass over [B*N, d] (what fusing saves)
// Softmax and context = stage 2 - stage 1.
void layer_stage(benchmark::State& state) {
  const rf::index_t stage = state.range(0), batch = state.range(1), seq = state.range(2);
  const int threads = static_cast<int>(state.range(3));
  const rf::encoder_config config = bert_base_layer_config();
  const rf::index_t d = config.hidden_size, d_ff = config.intermediate_size, rows = batch * seq;
  const rf::index_t heads = config.num_attention_heads, dh = d / heads;
  // The layer's pieces, packed once for all cases.
  struct pieces {
    rf::linear<float> projection, output, up, down;
    rf::layer_norm<float> norm;
  };
  static const pieces layer = [&] {
    const rf::encoder_layer_weights<float> w = bert_base_layer_parameters().layers().front();
    return pieces{
        rf::linear<float>(
            {{w.attention.query, d, "query"}, {w.attention.key, d, "key"}, {w.attention.value, d, "value"}}, d),
        rf::linear<float>(w.attention.output, d, d, "output"),
        rf::linear<float>(w.feed_forward.intermediate, d, d_ff, "intermediate"),
        rf::linear<float>(w.feed_forward.output, d_ff, d, "output"),
        rf::layer_norm<float>(w.attention_norm, d, config.layer_norm_eps, "norm")};
  }();
  const auto& [projection, output, up, down, norm] = layer;
  const rf::attention::problem p{rf::sequences::dense(batch, seq), heads, dh, false, heads, false};
  const rf::index_t stride =
      rf::round_to_line<float>(std::max({projection.scratch_elements(), up.scratch_elements(), down.scratch_elements(),
                                         rf::attention::scratch_elements<float>(p)}));
  rf::workspace ws(
      static_cast<std::size_t>(stride * threads + rows * (3 * d + d + d_ff + d) + batch * heads * seq * seq) *
              sizeof(float) +
          6 * 64,
      threads);
  rf::arena a = ws.make_arena();
  float* const scratch = a.take<float>(stride * threads);
  float* const qkv = a.take<float>(rows * 3 * d);
  float* const context = a.take<float>(rows * d);
  float* const stream = a.take<float>(rows * d);
  float* const hidden = a.take<float>(rows * d_ff);
  float* const logits = a.take<float>(batch * heads * seq * seq);
  for (rf::index_t i = 0; i < rows * 3 * d; ++i) qkv[i] = static_cast<float>((i * 7919 % 1000) / 5000.0 - 0.1);
  for (rf::index_t i = 0; i < rows * d; ++i)
    stream[i] = context[i] = static_cast<float>((i * 7907 % 1000) / 500.0 - 1.0);
  rf::attention::head_io<float> io;
  io.q = {qkv, rows, d, 3 * d};
  io.k = {qkv + d, rows, d, 3 * d};
  const rf::gemm::matrix<const float> v{qkv + 2 * d, rows, d, 3 * d};
  const auto normalize = [&](rf::index_t row, rf::index_t count) { norm.forward_rows(stream, stream, row, count); };
  const auto run = [&] {
    switch (stage) {
      case 0:
        projection.forward({stream, rows, d, d}, {qkv, rows, 3 * d, 3 * d}, rf::gemm::update::overwrite,
                           {scratch, stride, threads});
        break;
      case 1:
        rf::attention::logits<float>(p, io, logits, seq, {scratch, stride, threads});
        break;
      case 2:
        rf::attention::scaled_dot_product<float>(p, 0.125f, io, v, rf::gemm::matrix<float>{context, rows, d, d},
                                                 static_cast<const float*>(nullptr), {scratch, stride, threads});
        break;
      case 3:
        output.forward({context, rows, d, d}, {stream, rows, d, d}, rf::gemm::update::accumulate,
                       {scratch, stride, threads}, normalize);
        break;
      case 4:
        up.forward<rf::simd::gelu_erf>({stream, rows, d, d}, {hidden, rows, d_ff, d_ff}, rf::gemm::update::overwrite,
                                       {scratch, stride, threads});
        down.forward({hidden, rows, d_ff, d_ff}, {stream, rows, d, d}, rf::gemm::update::accumulate,
                     {scratch, stride, threads}, normalize);
        break;
      default:
        norm.forward(stream, stream, rows, threads);
    }
  };
  run();
  for (auto _ : state) {
    run();
    benchmark::ClobberMemory();
  }
  const double multiply_adds[] = {
      double(rows) * d * 3 * d, double(batch) * seq * seq * d, 2.0 * double(batch) * seq * seq * d,
      double(rows) * d * d,     2.0 * double(rows) * d * d_ff, 0};
  reuseformer_bench::add_rate_counters(state, multiply_adds[stage], threads);
}
BENCHMARK(layer_stage)
    ->ArgNames({"stage", "batch", "seq", "threads"})
    ->ArgsProduct({{0, 1, 2, 3, 4, 5}, {1, 8}, {128, 512}, {1, 2}})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

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
