// Reuse for a model you already have: measure how alike its layers' attention
// is, plan which heads reuse which heads of the layer below, and write the
// planned checkpoint (docs/semantics.md §Attention similarity, §Reuse planning).
// The command-line tool reuseformer-plan does the same for a checkpoint
// directory and reports the quality it costs.
#include <reuseformer/io.hpp>

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <vector>

namespace rf = reuseformer;
namespace fs = std::filesystem;

int main() {
  // A small checkpoint to plan: 4 layers of 8 heads, random weights.
  rf::encoder_config config;
  config.hidden_size = 64;
  config.num_attention_heads = 8;
  config.intermediate_size = 128;
  config.num_hidden_layers = 4;
  rf::encoder_parameters<float> weights(config);
  weights.fill_random(1, 0.2);
  const fs::path dir = fs::temp_directory_path() / ("reuse_planning_example-" + std::to_string(::getpid()));
  fs::create_directories(dir / "model");
  std::ofstream(dir / "model" / "config.json")
      << R"({"hidden_size": 64, "num_attention_heads": 8, "intermediate_size": 128, "num_hidden_layers": 4})";
  rf::io::write_safetensors(dir / "model" / "model.safetensors", rf::io::encoder_tensors(config, weights.layers()));

  // Calibration inputs: 4 sequences of 32 tokens (hidden states here; token ids
  // go through model.embeddings() first).
  const rf::index_t batch = 4, seq = 32, d = config.hidden_size;
  std::vector<float> hidden(static_cast<std::size_t>(batch * seq * d));
  std::mt19937 bits(7);
  std::normal_distribution<float> normal;
  for (float& x : hidden) x = normal(bits);
  const rf::tensor_view<const float, 3> input(hidden.data(), {batch, seq, d});

  // 1. S_l[j, i]: how alike head j of layer l is to head i of layer l-1.
  const rf::io::model<float> model = rf::io::load_model<float>(dir / "model");
  const rf::analysis::similarity_report s = rf::analysis::attention_similarity(model.encoder(), input);
  for (rf::index_t l = 1; l < config.num_hidden_layers; ++l)
    std::printf("layer %lld: head 0 is most like head %lld of layer %lld (S = %.3f)\n", static_cast<long long>(l),
                static_cast<long long>(s.between(l, l - 1).best_match(0)), static_cast<long long>(l - 1),
                s.between(l, l - 1).at(0, s.between(l, l - 1).best_match(0)));

  // 2. Reuse 4 heads in layers 1-3, chosen by similarity under the prefix rule.
  const rf::analysis::reuse_plan plan = rf::analysis::plan_reuse(s, {0, 4, 4, 4});
  std::printf("planned similarity %.3f, naive %.3f (sum over reused heads)\n", rf::analysis::plan_similarity(plan, s),
              rf::analysis::plan_similarity(rf::analysis::naive_reuse(8, {0, 4, 4, 4}), s));

  // 3. The planned checkpoint: permuted heads, reused heads' query/key dropped.
  rf::io::write_planned_checkpoint(dir / "model", plan, dir / "planned");
  const rf::io::model<float> planned = rf::io::load_model<float>(dir / "planned");

  // Both models on the same batch: how far the planned one drifts.
  std::vector<float> a(hidden.size()), b(hidden.size());
  rf::workspace ws = model.make_workspace(batch, seq);
  rf::workspace planned_ws = planned.make_workspace(batch, seq);  // it also holds the reused probabilities
  model.forward(input, rf::tensor_view<float, 3>(a.data(), {batch, seq, d}), ws);
  planned.forward(input, rf::tensor_view<float, 3>(b.data(), {batch, seq, d}), planned_ws);
  double dot = 0, aa = 0, bb = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    dot += double(a[i]) * b[i];
    aa += double(a[i]) * a[i];
    bb += double(b[i]) * b[i];
  }
  std::printf("cosine similarity of the final hidden states: %.4f\n", dot / std::sqrt(aa * bb));
  fs::remove_all(dir);
  return 0;
}
