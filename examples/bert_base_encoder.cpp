// A BERT-base-sized encoder (d = 768, 12 heads, d_ff = 3072, 12 layers) with
// random weights: build it, size its workspace once, run a batch, and report
// time and memory. This is the shape of every reuseformer program:
//   config -> parameters (owned by you) -> model (views them)
//   -> workspace (sized once) -> forward (allocation-free, repeatable).
//
// usage: bert_base_encoder [--batch B] [--seq N] [--threads T] [--repeat R]
#include <reuseformer/reuseformer.hpp>

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace rf = reuseformer;

namespace {

struct options {
  rf::index_t batch = 1, seq = 128;
  int threads = rf::max_threads(), repeat = 10;
};

options parse(int argc, char** argv) {
  options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    const long value = std::strtol(argv[i + 1], nullptr, 10);
    if (!std::strcmp(argv[i], "--batch"))
      o.batch = value;
    else if (!std::strcmp(argv[i], "--seq"))
      o.seq = value;
    else if (!std::strcmp(argv[i], "--threads"))
      o.threads = static_cast<int>(value);
    else if (!std::strcmp(argv[i], "--repeat"))
      o.repeat = static_cast<int>(value);
    else {
      std::fprintf(stderr, "usage: %s [--batch B] [--seq N] [--threads T] [--repeat R]\n", argv[0]);
      std::exit(2);
    }
  }
  if (o.batch < 1 || o.seq < 1 || o.threads < 1 || o.repeat < 1) {
    std::fprintf(stderr, "%s: batch, seq, threads and repeat must be >= 1\n", argv[0]);
    std::exit(2);
  }
  return o;
}

double peak_rss_mib() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;  // Linux reports KiB
}

}  // namespace

int main(int argc, char** argv) try {
  const options opt = parse(argc, argv);

  rf::encoder_config config;  // the defaults are BERT-base
  rf::encoder_parameters<float> parameters(config);
  parameters.fill_random(/*seed=*/2024);  // N(0, 0.02), BERT's initialiser
  const rf::encoder<float> model(config, parameters.layers());

  // Input [B, N, d] and a Hugging Face attention_mask [B, N]: the last sequence
  // of the batch is padded to half its length, as a tokenizer would.
  const rf::index_t rows = opt.batch * opt.seq, d = config.hidden_size;
  std::vector<float> input(static_cast<std::size_t>(rows * d)), output(input.size());
  for (std::size_t i = 0; i < input.size(); ++i) input[i] = static_cast<float>((i * 7919 % 1000) / 500.0 - 1.0);
  std::vector<std::int64_t> mask(static_cast<std::size_t>(rows), 1);
  std::fill(mask.end() - opt.seq / 2, mask.end(), 0);

  // Size the workspace once; every forward pass below reuses it.
  rf::workspace ws = model.make_workspace(opt.batch, opt.seq, opt.threads);
  const auto forward = [&] {
    model.forward(rf::tensor_view<const float, 3>(input.data(), {opt.batch, opt.seq, d}),
                  rf::tensor_view<float, 3>(output.data(), {opt.batch, opt.seq, d}), ws,
                  rf::tensor_view<const std::int64_t, 2>(mask.data(), {opt.batch, opt.seq}));
  };

  forward();  // warm-up (page faults, thread pool start)
  const std::vector<float> first = output;
  std::vector<double> ms;
  for (int r = 0; r < opt.repeat; ++r) {
    const auto start = std::chrono::steady_clock::now();
    forward();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(ms.begin(), ms.end());
  // Repeatable: the workspace carries nothing from one pass to the next, so
  // every pass gives the first one's output, bit for bit, and every value is finite.
  if (output != first || !std::all_of(output.begin(), output.end(), [](float v) { return std::isfinite(v); })) {
    std::fprintf(stderr, "error: the passes' outputs differ, or are not finite\n");
    return 1;
  }

  // Multiply-adds of one pass, from the library's cost model (what it executes).
  const double macs = rf::analysis::cost<float>(config, opt.batch, opt.seq).multiply_adds;
  const double median = ms[ms.size() / 2];
  std::printf("reuseformer %s | BERT-base encoder (d=%td, H=%td, d_ff=%td, L=%td) | SIMD %s | float\n", rf::version, d,
              config.num_attention_heads, config.intermediate_size, config.num_hidden_layers,
              rf::simd::arch_name<rf::simd::default_arch>());
  std::printf("batch %td x seq %td, %d thread(s), %d timed runs\n", opt.batch, opt.seq, opt.threads, opt.repeat);
  std::printf("time:   median %.2f ms (min %.2f, max %.2f), %.2f ms per layer, %.1f GFLOP/s\n", median, ms.front(),
              ms.back(), median / static_cast<double>(config.num_hidden_layers), 2.0 * macs / (median * 1e6));
  std::printf("memory: parameters %.1f MiB, workspace %.2f MiB, input+output %.2f MiB, peak RSS %.1f MiB\n",
              static_cast<double>(model.parameter_bytes()) / (1 << 20),
              static_cast<double>(ws.size_bytes()) / (1 << 20),
              2.0 * static_cast<double>(input.size() * sizeof(float)) / (1 << 20), peak_rss_mib());
  std::printf("check:  output[0] = %.6f\n", static_cast<double>(output[0]));
  return 0;
} catch (const rf::error& e) {
  std::fprintf(stderr, "error: %s\n", e.what());
  return 1;
}
