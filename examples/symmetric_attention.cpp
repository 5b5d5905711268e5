// Symmetric and pairwise attention (arXiv 2406.06366): queries and keys share one
// projection, so the logits are Q·Qᵀ (symmetric) or Q·P·Qᵀ with a learned
// per-head matrix P (pairwise). The config names the score function
// (config.json's `plpi_affinity_function`); rf::any_encoder builds the model it
// names, chosen at run time (rf::encoder<float, Score> fixes it when compiling).
#include <reuseformer/reuseformer.hpp>

#include <cstdio>
#include <vector>

namespace rf = reuseformer;

int main() try {
  rf::encoder_config config;  // BERT-base shapes, scaled down to run in a blink
  config.hidden_size = 128;
  config.num_attention_heads = 4;
  config.intermediate_size = 512;
  config.num_hidden_layers = 2;

  const rf::index_t batch = 1, seq = 64, d = config.hidden_size;
  std::vector<float> x(batch * seq * d, 0.25f), y(x.size());

  for (const char* name : {"vanilla", "symmetric", "pairwise"}) {
    config.score = *rf::score_function_named(name);  // what a config.json reader does
    // The parameter store follows the score function: no key projection for
    // symmetric/pairwise, pairwise_factors [H, dh, dh] for pairwise.
    rf::encoder_parameters<float> parameters(config);
    parameters.fill_random(/*seed=*/7);

    const rf::any_encoder<float> model(config, parameters.layers());
    rf::workspace ws = model.make_workspace(batch, seq);
    model.forward(rf::view(x, {batch, seq, d}), rf::view(y, {batch, seq, d}), ws);

    // Symmetric logits cost one triangle of Q·Qᵀ; the key projection is gone.
    const auto cost = rf::analysis::measure(model, batch, seq, 1);
    std::printf("%-9s parameters %8zu bytes, multiply-adds %6.2f M (of which logits %4.2f M), workspace %zu bytes\n",
                name, cost.parameter_bytes, cost.multiply_adds / 1e6,
                (cost.layers[0].scores + cost.layers[1].scores) / 1e6, cost.workspace_bytes);
  }
  return 0;
} catch (const rf::error& e) {
  std::fprintf(stderr, "error: %s\n", e.what());
  return 1;
}
