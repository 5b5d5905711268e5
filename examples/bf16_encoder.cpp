// A bfloat16 encoder: the same model with its Linears' weights stored in
// bfloat16 and their products accumulated in float (bf16_products), next to
// the float model, on the same input: what it holds, how far its output is
// from the float one, and how long each takes.
//
// The choice is a template argument, made when compiling: with -march flags
// that enable AVX512-BF16 (e.g. -march=znver4, sapphirerapids, native on such a
// CPU) the products run on vdpbf16ps; elsewhere the same bf16 weights are
// widened to float inside the kernel, with the same results up to summation order.
//
// Weights already in bfloat16 (a BF16 checkpoint's: io::load_model binds them
// this way) are given as bfloat16 views and packed as they are, with no float
// copy; the last part builds the bf16 model so and checks it is the same model.
//
// usage: bf16_encoder [--layers L] [--batch B] [--seq N]
#include <reuseformer/reuseformer.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <vector>

namespace rf = reuseformer;

int main(int argc, char** argv) try {
  rf::encoder_config config;  // BERT-base: d = 768, 12 heads, d_ff = 3072
  rf::index_t batch = 1, seq = 128;
  for (int i = 1; i + 1 < argc; i += 2) {
    const long value = std::strtol(argv[i + 1], nullptr, 10);
    if (!std::strcmp(argv[i], "--layers"))
      config.num_hidden_layers = value;
    else if (!std::strcmp(argv[i], "--batch"))
      batch = value;
    else if (!std::strcmp(argv[i], "--seq"))
      seq = value;
  }

  rf::encoder_parameters<float> parameters(config);
  parameters.fill_random(/*seed=*/7);
  // Both models are built from the same float parameters; the bf16 one rounds
  // each weight once (to nearest even) as it packs it.
  const rf::encoder<float> fp32(config, parameters.layers());
  const rf::encoder<float, rf::score_function::standard, rf::simd::default_arch, rf::bf16_products> bf16(
      config, parameters.layers());

  const rf::index_t d = config.hidden_size;
  std::vector<float> x(static_cast<std::size_t>(batch * seq * d)), y32(x.size()), y16(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.01F * static_cast<float>(i));
  const rf::tensor_view<const float, 3> in(x.data(), {batch, seq, d});

  const auto run = [&](const auto& model, std::vector<float>& y) {
    rf::workspace ws = model.make_workspace(batch, seq);
    const rf::tensor_view<float, 3> out(y.data(), {batch, seq, d});
    model.forward(in, out, ws);  // warm-up
    const auto start = std::chrono::steady_clock::now();
    model.forward(in, out, ws);
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  };
  const double ms32 = run(fp32, y32), ms16 = run(bf16, y16);

  // The same bf16 model from bfloat16 weights: each Linear's weight a view of
  // bfloat16 values (here the float ones rounded by hand), everything else float.
  std::deque<std::vector<rf::bfloat16>> storage;
  const auto narrow = [&](const rf::linear_weights<float>& w) {
    std::vector<rf::bfloat16>& values = storage.emplace_back();
    for (rf::index_t i = 0; i < w.weight.size(); ++i) values.push_back(rf::to_bfloat16(w.weight.data()[i]));
    return rf::linear_weights<float, rf::bfloat16>{{values.data(), w.weight.shape()}, w.bias};
  };
  std::vector<rf::encoder_layer_weights<float, rf::bfloat16>> layers16;
  for (const rf::encoder_layer_weights<float>& w : parameters.layers())
    layers16.push_back({{narrow(w.attention.query), narrow(w.attention.key), narrow(w.attention.value),
                         narrow(w.attention.output), w.attention.relative_position, w.attention.pairwise_factors},
                        w.attention_norm,
                        {narrow(w.feed_forward.intermediate), narrow(w.feed_forward.output)},
                        w.output_norm});
  const rf::encoder<float, rf::score_function::standard, rf::simd::default_arch, rf::bf16_products> from_bf16(config,
                                                                                                              layers16);
  std::vector<float> y16_views(x.size());
  run(from_bf16, y16_views);
  const bool same = y16_views == y16;

  double max_error = 0, mean_error = 0, mean_magnitude = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    max_error = std::max(max_error, static_cast<double>(std::abs(y16[i] - y32[i])));
    mean_error += std::abs(y16[i] - y32[i]);
    mean_magnitude += std::abs(y32[i]);
  }
  std::printf("%td layers, batch %td x seq %td, %d thread(s)\n", config.num_hidden_layers, batch, seq,
              rf::max_threads());
  std::printf("parameters: fp32 %.1f MiB, bf16 %.1f MiB\n", static_cast<double>(fp32.parameter_bytes()) / (1 << 20),
              static_cast<double>(bf16.parameter_bytes()) / (1 << 20));
  std::printf("forward: fp32 %.1f ms, bf16 %.1f ms\n", ms32, ms16);
  std::printf("bf16 against fp32: max |diff| %.3g, mean |diff| / mean |fp32| %.3g\n", max_error,
              mean_error / mean_magnitude);
  std::printf("bf16 from bfloat16 weights: %s\n", same ? "the same outputs, bit for bit" : "DIFFERENT outputs");
  // bf16 keeps 8 significant bits: outputs agree to about 1e-2 relative, not 1e-6.
  return same && mean_error / mean_magnitude < 0.05 ? 0 : 1;
} catch (const rf::error& e) {
  std::fprintf(stderr, "bf16_encoder: %s\n", e.what());
  return 1;
}
