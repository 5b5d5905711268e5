// Packed (ragged) batches: sequences of different lengths without padding.
// The tokens of all sequences are laid end to end, [T, d], with B + 1 offsets
// (FlashAttention's cu_seqlens); projections and the FFN run on the T real
// tokens and each sequence attends within itself only. This example runs one
// batch in three ways and checks that they agree at every real token:
//   1. padded to the longest sequence with a Hugging Face attention_mask (the default),
//   2. the same padded tensors with padding::skip (packed inside, padding written as 0),
//   3. packed by the caller: tokens [T, d] plus offsets.
#include <reuseformer/reuseformer.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <vector>

int main() try {
  namespace rf = reuseformer;

  rf::encoder_config config;  // small shapes, with chained score reuse
  config.hidden_size = 64;
  config.num_attention_heads = 4;
  config.intermediate_size = 256;
  config.num_hidden_layers = 3;
  config.reuse_schedule = {0, 2, 3};
  rf::encoder_parameters<float> parameters(config);
  parameters.fill_random(/*seed=*/5);
  const rf::encoder<float> model(config, parameters.layers());

  const std::vector<rf::index_t> lengths{20, 3, 0, 47};  // an empty sequence is allowed
  const rf::index_t batch = 4, seq = 47, d = config.hidden_size;
  std::vector<rf::index_t> offsets{0};  // {0, 20, 23, 23, 70}
  for (const rf::index_t n : lengths) offsets.push_back(offsets.back() + n);
  const rf::index_t tokens = offsets.back();

  // The padded form: [B, N, d] and a right-padded mask [B, N].
  std::vector<float> padded(batch * seq * d, 0.0f);
  std::vector<std::int64_t> mask(batch * seq, 0);
  for (rf::index_t b = 0; b < batch; ++b)
    for (rf::index_t i = 0; i < lengths[b]; ++i) {
      mask[b * seq + i] = 1;
      for (rf::index_t k = 0; k < d; ++k) padded[(b * seq + i) * d + k] = std::sin(0.1f * float(b * 1000 + i * d + k));
    }
  const rf::tensor_view<const std::int64_t, 2> mask_view(mask.data(), {batch, seq});

  // 1 and 2: one workspace serves both padded modes.
  rf::workspace padded_ws = model.make_workspace(batch, seq);
  std::vector<float> computed(padded.size()), skipped(padded.size());
  model.forward(rf::view(padded, {batch, seq, d}), rf::view(computed, {batch, seq, d}), padded_ws, mask_view);
  model.forward(rf::view(padded, {batch, seq, d}), rf::view(skipped, {batch, seq, d}), padded_ws, mask_view,
                rf::padding::skip);

  // 3: the real tokens only; the workspace and the reuse state follow the
  // lengths (sum of N_b² per kept head instead of B·N²).
  std::vector<float> packed(tokens * d), packed_out(packed.size());
  for (rf::index_t b = 0; b < batch; ++b)
    std::copy_n(padded.begin() + b * seq * d, lengths[b] * d, packed.begin() + offsets[b] * d);
  rf::workspace packed_ws = model.make_workspace(offsets);
  model.forward(rf::view(packed, {tokens, d}), rf::view(packed_out, {tokens, d}), offsets, packed_ws);

  float worst = 0, padding = 0;
  for (rf::index_t b = 0; b < batch; ++b)
    for (rf::index_t i = 0; i < seq * d; ++i) {
      const rf::index_t at = b * seq * d + i;
      if (i < lengths[b] * d) {
        worst = std::max(
            {worst, std::abs(computed[at] - packed_out[offsets[b] * d + i]), std::abs(computed[at] - skipped[at])});
      } else {
        padding = std::max(padding, std::abs(skipped[at]));
      }
    }
  std::printf(
      "%td real tokens of %td padded; largest difference at a real token %.2e; padding::skip wrote %g at "
      "padding\n",
      tokens, batch * seq, double(worst), double(padding));
  std::printf("workspace: padded %zu bytes, packed %zu bytes (reuse state %zu vs %zu)\n", padded_ws.size_bytes(),
              packed_ws.size_bytes(), model.reuse_state_bytes(batch, seq), model.reuse_state_bytes(offsets));
  return worst < 1e-4f && padding == 0 ? 0 : 1;
} catch (const reuseformer::error& e) {
  std::fprintf(stderr, "error: %s\n", e.what());
  return 1;
}
