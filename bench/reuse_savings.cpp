// What score reuse saves on a 12-layer BERT-base encoder, measured against what
// the cost model predicts (issue: reuse, "Measure").
//
// For each sequence length it builds one encoder per schedule (K heads reused by
// layers 1..11 for K in {0, 3, 6, 12}, and TensorFlow's default: all heads,
// layers 1..6), then times forward passes round-robin across the schedules, so
// that machine noise (this is a shared 2-core machine) hits every schedule alike.
// Reported: median time with min/max, the time saved against K = 0, the saving
// the cost model predicts (fraction of multiply-adds removed), their ratio, and
// the parameter, workspace and reuse-state bytes.
//
// usage: reuse_savings [--seq 128,512] [--batch 1] [--threads 2] [--rounds 9]
#include <reuseformer/reuseformer.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

namespace rf = reuseformer;

namespace {

struct schedule {
  const char* name;
  rf::index_t reuse_attention, max_reuse_layer_idx;
};

struct candidate {
  schedule s;
  rf::encoder_config config;
  std::unique_ptr<rf::encoder_parameters<float>> parameters;
  std::unique_ptr<rf::encoder<float>> model;
  rf::workspace ws;
  std::vector<double> ms;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) try {
  std::vector<rf::index_t> seqs = {128, 512};
  rf::index_t batch = 1;
  int threads = 2, rounds = 9;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--seq")) {
      seqs.clear();
      std::istringstream list(argv[i + 1]);
      for (std::string item; std::getline(list, item, ',');) seqs.push_back(std::stol(item));
    } else if (!std::strcmp(argv[i], "--batch")) batch = std::stol(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--rounds")) rounds = std::atoi(argv[i + 1]);
    else {
      std::fprintf(stderr, "usage: %s [--seq 128,512] [--batch B] [--threads T] [--rounds R]\n", argv[0]);
      return 2;
    }
  }

  const std::vector<schedule> schedules = {
      {"K=0 (vanilla)", 0, 11}, {"K=3, layers 1-11", 3, 11}, {"K=6, layers 1-11", 6, 11},
      {"K=12, layers 1-11", 12, 11}, {"TF default (-1, 6)", -1, 6}};
  std::printf("BERT-base encoder (12 layers), batch %td, %d thread(s), %d rounds, SIMD %s, float\n", batch, threads,
              rounds, rf::simd::arch_name<rf::simd::default_arch>());

  for (const rf::index_t seq : seqs) {
    std::vector<candidate> runs;
    for (const schedule& s : schedules) {
      candidate c{s, {}, nullptr, nullptr, {}, {}};
      c.config.reuse_schedule = rf::reference_reuse_schedule(s.reuse_attention, s.max_reuse_layer_idx, 12, 12);
      c.parameters = std::make_unique<rf::encoder_parameters<float>>(c.config);
      c.parameters->fill_random(7);
      c.model = std::make_unique<rf::encoder<float>>(c.config, c.parameters->layers());
      c.ws = c.model->make_workspace(batch, seq, threads);
      runs.push_back(std::move(c));
    }
    std::vector<float> x(static_cast<std::size_t>(batch * seq * 768)), y(x.size());
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>((i * 7919 % 1000) / 500.0 - 1.0);
    const auto forward = [&](candidate& c) {
      c.model->forward(rf::tensor_view<const float, 3>(x.data(), {batch, seq, 768}),
                       rf::tensor_view<float, 3>(y.data(), {batch, seq, 768}), c.ws);
    };
    for (candidate& c : runs) forward(c);  // warm-up
    for (int r = 0; r < rounds; ++r)
      for (std::size_t k = 0; k < runs.size(); ++k) {
        candidate& c = runs[(k + static_cast<std::size_t>(r)) % runs.size()];  // rotate the order
        const auto start = std::chrono::steady_clock::now();
        forward(c);
        c.ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
      }

    const double base_ms = median(runs[0].ms);
    const double base_macs = rf::analysis::cost<float>(runs[0].config, batch, seq).multiply_adds;
    std::printf("\nN = %td\n%-20s %22s %8s %10s %7s %9s %10s %11s %12s\n", seq, "schedule", "median ms (min-max)",
                "saved", "predicted", "ratio", "GMAC", "params MB", "workspace MB", "reuse-state MB");
    for (candidate& c : runs) {
      const auto cost = rf::analysis::measure(*c.model, batch, seq, threads);
      const double ms = median(c.ms), saved = 1 - ms / base_ms, predicted = 1 - cost.multiply_adds / base_macs;
      char ratio[16] = "-";
      if (predicted > 0) std::snprintf(ratio, sizeof ratio, "%.2f", saved / predicted);
      std::printf("%-20s %8.1f (%6.1f-%6.1f) %7.1f%% %9.1f%% %7s %9.2f %10.1f %11.2f %12.2f\n", c.s.name, ms,
                  *std::min_element(c.ms.begin(), c.ms.end()), *std::max_element(c.ms.begin(), c.ms.end()),
                  100 * saved, 100 * predicted, ratio, cost.multiply_adds / 1e9, cost.parameter_bytes / 1e6,
                  cost.workspace_bytes / 1e6, cost.reuse_state_bytes / 1e6);
    }
  }
  return 0;
} catch (const rf::error& e) {
  std::fprintf(stderr, "error: %s\n", e.what());
  return 1;
}
