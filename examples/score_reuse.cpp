// Score reuse (Reuse Transformers, arXiv 2110.06821): later layers take some
// heads' attention probabilities from the layer before instead of computing them.
// This example configures TensorFlow's ReuseTransformer default, checks what it
// saves with the cost model, runs it, and reads back every layer's probabilities.
#include <reuseformer/reuseformer.hpp>

#include <cstdint>
#include <cstdio>
#include <vector>

int main() try {
  namespace rf = reuseformer;

  rf::encoder_config config;  // BERT-base shapes, scaled down to run in a blink
  config.hidden_size = 128;
  config.num_attention_heads = 4;
  config.intermediate_size = 512;
  config.num_hidden_layers = 6;
  // TF Model Garden's two numbers: reuse_attention = -1 (all heads) on layers
  // 1 .. max_reuse_layer_idx = 3; an explicit list {0, 4, 4, 4, 0, 0} says the same.
  config.reuse_schedule = rf::reference_reuse_schedule(/*reuse_attention=*/-1, /*max_reuse_layer_idx=*/3,
                                                       config.num_attention_heads, config.num_hidden_layers);

  // Reusing layers have no (full reuse) or shorter query/key weights: the
  // parameter store lays them out from the schedule, as a checkpoint would.
  rf::encoder_parameters<float> parameters(config);
  parameters.fill_random(/*seed=*/3);
  const rf::encoder<float> model(config, parameters.layers());

  const rf::index_t batch = 2, seq = 16, d = config.hidden_size, heads = config.num_attention_heads;
  std::vector<float> x(batch * seq * d, 0.25f), y(x.size());
  std::vector<std::int64_t> mask(batch * seq, 1);
  for (rf::index_t j = 12; j < seq; ++j) mask[seq + j] = 0;  // sequence 1: 12 tokens

  // Optional: every layer's probability stack [B, H, N, N] (fresh heads first,
  // then reused ones). Costs B*H*N*N floats per layer, so it is off unless asked.
  std::vector<std::vector<float>> stacks(config.num_hidden_layers, std::vector<float>(batch * heads * seq * seq));
  std::vector<rf::tensor_view<float, 4>> views;
  for (auto& s : stacks) views.emplace_back(s.data(), std::array<rf::index_t, 4>{batch, heads, seq, seq});

  rf::workspace ws = model.make_workspace(batch, seq);
  model.forward(rf::tensor_view<const float, 3>(x.data(), {batch, seq, d}),
                rf::tensor_view<float, 3>(y.data(), {batch, seq, d}), ws,
                rf::tensor_view<const std::int64_t, 2>(mask.data(), {batch, seq}), {.attentions = views});

  // Full reuse hands layer 1 exactly layer 0's probabilities.
  std::printf("layer 1 reuses layer 0's probabilities exactly: %s\n", stacks[1] == stacks[0] ? "yes" : "NO");

  // What the schedule saves, from the exact cost model.
  rf::encoder_config vanilla = config;
  vanilla.reuse_schedule.clear();
  const auto with_reuse = rf::analysis::measure(model, batch, seq, 1);
  const auto without = rf::analysis::cost<float>(vanilla, batch, seq);
  std::printf("multiply-adds: %.1f M (vanilla %.1f M, %.1f%% saved)\n", with_reuse.multiply_adds / 1e6,
              without.multiply_adds / 1e6, 100 * (1 - with_reuse.multiply_adds / without.multiply_adds));
  std::printf("parameters: %zu bytes (vanilla %zu); workspace %zu bytes, of which reuse state %zu\n",
              with_reuse.parameter_bytes, without.parameter_bytes, with_reuse.workspace_bytes,
              with_reuse.reuse_state_bytes);
  return stacks[1] == stacks[0] ? 0 : 1;
} catch (const reuseformer::error& e) {
  std::fprintf(stderr, "error: %s\n", e.what());
  return 1;
}
