// Token-by-token causal decoding with a reuse-aware key/value cache: a prompt
// is prefilled once, then each step feeds one new token per sequence. Layers
// that reuse a head's attention probabilities keep no keys for it, so the
// cache shrinks with the reuse schedule. This example builds a small causal
// stack with full reuse on layers 1-5, decodes, checks the result against one
// causal forward pass over the whole sequence, and compares cache sizes.
#include <reuseformer/reuseformer.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

int main() try {
  namespace rf = reuseformer;

  rf::encoder_config config;
  config.hidden_size = 128;
  config.num_attention_heads = 4;
  config.intermediate_size = 512;
  config.num_hidden_layers = 6;
  config.norm = rf::norm_placement::pre;
  config.causal = true;                        // decoding needs a causal stack
  config.reuse_schedule = {0, 4, 4, 4, 4, 4};  // layers 1-5 reuse every head of the layer below

  rf::encoder_parameters<float> parameters(config);
  parameters.fill_random(/*seed=*/5, /*stddev=*/0.05);
  const rf::encoder<float> model(config, parameters.layers());

  // Two sequences with prompts of 12 and 7 tokens, room for 16 tokens each.
  const rf::index_t batch = 2, prompt_length = 12, max_length = 16, steps = 4, d = config.hidden_size;
  const std::vector<rf::index_t> lengths{12, 7};
  std::vector<float> prompt(batch * prompt_length * d);
  for (std::size_t i = 0; i < prompt.size(); ++i) prompt[i] = std::sin(0.1f * static_cast<float>(i));
  std::vector<float> prompt_out(prompt.size());

  rf::decoder state(model, batch, max_length, /*threads=*/1);  // cache and workspace: allocated here, once
  state.prefill(rf::tensor_view<const float, 3>(prompt.data(), {batch, prompt_length, d}),
                rf::tensor_view<float, 3>(prompt_out.data(), {batch, prompt_length, d}), lengths);

  // There is no embedding or output head here, so each step feeds back the
  // previous output as the next token (a real model would embed a sampled id).
  std::vector<float> token(batch * d), sequence0(prompt.begin(), prompt.begin() + prompt_length * d);
  for (rf::index_t b = 0; b < batch; ++b)
    std::copy_n(prompt_out.begin() + (b * prompt_length + lengths[b] - 1) * d, d, token.begin() + b * d);
  std::vector<float> out(token.size());
  for (rf::index_t k = 0; k < steps; ++k) {
    sequence0.insert(sequence0.end(), token.begin(), token.begin() + d);
    state.step(rf::tensor_view<const float, 3>(token.data(), {batch, 1, d}),
               rf::tensor_view<float, 3>(out.data(), {batch, 1, d}));
    token = out;
  }
  std::printf("sequence lengths after %td steps: %td and %td tokens\n", steps, state.lengths()[0], state.lengths()[1]);

  // The last step's output for sequence 0 is what one causal forward pass over
  // its 16 tokens gives at the last position.
  const rf::index_t total = prompt_length + steps;
  std::vector<float> full(sequence0.size());
  rf::workspace ws = model.make_workspace(1, total);
  model.forward(rf::tensor_view<const float, 3>(sequence0.data(), {1, total, d}),
                rf::tensor_view<float, 3>(full.data(), {1, total, d}), ws);
  float worst = 0;
  for (rf::index_t c = 0; c < d; ++c) worst = std::max(worst, std::abs(out[c] - full[(total - 1) * d + c]));
  std::printf("last step against the causal forward pass: max difference %.2e\n", worst);

  // What reuse saves in the cache, from the cost model.
  rf::encoder_config vanilla = config;
  vanilla.reuse_schedule.clear();
  const std::size_t vanilla_bytes =
      rf::analysis::decoding_cost<float>(vanilla, batch, max_length).cache_bytes(batch, max_length);
  std::printf("cache: %zu bytes (a vanilla stack: %zu bytes, %.1f%% of it); workspace %zu bytes\n", state.cache_bytes(),
              vanilla_bytes, 100.0 * static_cast<double>(state.cache_bytes()) / static_cast<double>(vanilla_bytes),
              state.workspace_bytes());
  return worst < 1e-4f ? 0 : 1;
} catch (const reuseformer::error& e) {
  std::fprintf(stderr, "error: %s\n", e.what());
  return 1;
}
