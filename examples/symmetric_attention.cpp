// Symmetric and pairwise attention (arXiv 2406.06366): queries and keys share one
// projection, so the logits are Q·Qᵀ (symmetric) or Q·P·Qᵀ with a learned
// per-head matrix P (pairwise). The config names the score function
// (config.json's `plpi_affinity_function`); rf::any_encoder builds the model it
// names, chosen at run time (rf::encoder<float, Score> fixes it when compiling).
#include <reuseformer/reuseformer.hpp>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

namespace rf = reuseformer;

int main() try {
  rf::encoder_config config;  // BERT-base shapes, scaled down to run in a blink
  config.hidden_size = 128;
  config.num_attention_heads = 4;
  config.intermediate_size = 512;
  config.num_hidden_layers = 2;

  const rf::index_t batch = 1, seq = 64, d = config.hidden_size;
  const rf::index_t heads = config.num_attention_heads, dh = d / heads, layers = config.num_hidden_layers;
  std::vector<float> x(batch * seq * d, 0.25f), y(x.size());

  std::vector<rf::analysis::encoder_cost> costs;  // vanilla, symmetric, pairwise
  for (const char* name : {"vanilla", "symmetric", "pairwise"}) {
    config.score = *rf::score_function_named(name);  // what a config.json reader does
    // The parameter store follows the score function: no key projection for
    // symmetric/pairwise, pairwise_factors [H, dh, dh] for pairwise.
    rf::encoder_parameters<float> parameters(config);
    parameters.fill_random(/*seed=*/7);

    const rf::any_encoder<float> model(config, parameters.layers());
    rf::workspace ws = model.make_workspace(batch, seq);
    model.forward(rf::view(x, {batch, seq, d}), rf::view(y, {batch, seq, d}), ws);
    for (const float v : y)
      if (!std::isfinite(v)) throw rf::error(std::string(name) + ": the output is not finite");

    // Symmetric logits cost one triangle of Q·Qᵀ; the key projection is gone.
    const auto cost = rf::analysis::measure(model, batch, seq, 1);
    std::printf("%-9s parameters %8zu bytes, multiply-adds %6.2f M (of which logits %4.2f M), workspace %zu bytes\n",
                name, cost.parameter_bytes, cost.multiply_adds / 1e6,
                (cost.layers[0].scores + cost.layers[1].scores) / 1e6, cost.workspace_bytes);
    costs.push_back(cost);
  }

  // What the figures show, checked: every layer loses the key projection's
  // weight and bias, a pairwise layer adds its P [H, dh, dh], and symmetric
  // logits cost the N(N+1)/2 triangle instead of N x N.
  const auto bytes = [](rf::index_t floats) { return static_cast<std::size_t>(floats) * sizeof(float); };
  const auto &vanilla = costs[0], &symmetric = costs[1], &pairwise = costs[2];
  if (vanilla.parameter_bytes - symmetric.parameter_bytes != bytes(layers * (d * d + d)) ||
      pairwise.parameter_bytes - symmetric.parameter_bytes != bytes(layers * heads * dh * dh) ||
      symmetric.layers[0].scores != double(heads * seq * (seq + 1) * dh) / 2 ||
      vanilla.layers[0].scores != double(heads * seq * seq * dh))
    throw rf::error("the parameter or logit counts differ from the ones stated above");
  return 0;
} catch (const rf::error& e) {
  std::fprintf(stderr, "error: %s\n", e.what());
  return 1;
}
