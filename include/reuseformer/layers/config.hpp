#pragma once
// Run-time configuration of an encoder, with Hugging Face BERT's names.

#include <cmath>
#include <cstddef>
#include <vector>

#include "reuseformer/attention/score_function.hpp"
#include "reuseformer/core/error.hpp"
#include "reuseformer/core/tensor_view.hpp"

namespace reuseformer {

namespace detail {
// The checks every attention configuration shares: d >= 1, H >= 1, H divides d.
inline void require_heads(index_t hidden, index_t heads) {
  require(hidden >= 1, "hidden_size: expected >= 1, found ", hidden);
  require(heads >= 1, "num_attention_heads: expected >= 1, found ", heads);
  require(hidden % heads == 0, "num_attention_heads: expected a divisor of hidden_size ", hidden, ", found ", heads);
}
}  // namespace detail

// FFN activation (Hugging Face `hidden_act`): "gelu" (erf), "gelu_new" (tanh
// approximation), "relu".
enum class activation { gelu, gelu_tanh, relu };

// Where LayerNorm sits: post (BERT: x = LN(x + f(x))) or pre (`norm_first`:
// x = x + f(LN(x))).
enum class norm_placement { post, pre };

struct encoder_config {
  index_t hidden_size = 768;         // d
  index_t num_attention_heads = 12;  // H, must divide d
  index_t intermediate_size = 3072;  // d_ff
  index_t num_hidden_layers = 12;    // L
  activation hidden_act = activation::gelu;
  norm_placement norm = norm_placement::post;
  double layer_norm_eps = 1e-12;
  bool causal = false;  // query i sees keys j <= i only (on top of any padding mask)

  // How fresh heads form their logits (`plpi_affinity_function`, docs/semantics.md
  // §Symmetric and pairwise scores).
  // An encoder built with a compile-time score function requires this to match.
  score_function score = score_function::standard;

  // Score reuse (docs/semantics.md §Score reuse): reuse_schedule[l] = K_l, the
  // heads layer l takes from layer l-1's probability stack instead of computing
  // them. Empty: no reuse. reference_reuse_schedule() builds it from TF's two-number form.
  std::vector<index_t> reuse_schedule;

  // Relative-position bias on fresh heads (TF `use_relative_pe`): layer l has a
  // table [H - K_l, 2P - 1], P = pe_max_seq_length.
  bool use_relative_pe = false;
  index_t pe_max_seq_length = 512;

  [[nodiscard]] index_t head_dim() const { return hidden_size / num_attention_heads; }

  // K_l for layer l (0 without a schedule).
  [[nodiscard]] index_t reused_heads(index_t layer) const {
    return reuse_schedule.empty() ? 0 : reuse_schedule[static_cast<std::size_t>(layer)];
  }
  // H - K_l: the heads layer `layer` computes (and has query/key weights for).
  [[nodiscard]] index_t fresh_heads(index_t layer) const { return num_attention_heads - reused_heads(layer); }

  // Throws reuseformer::error naming the first invalid key.
  void validate() const {
    detail::require_heads(hidden_size, num_attention_heads);
    detail::require(intermediate_size >= 1, "intermediate_size: expected >= 1, found ", intermediate_size);
    detail::require(num_hidden_layers >= 0, "num_hidden_layers: expected >= 0, found ", num_hidden_layers);
    detail::require(std::isfinite(layer_norm_eps) && layer_norm_eps > 0,
                    "layer_norm_eps: expected a finite value > 0, found ", layer_norm_eps);
    if (!reuse_schedule.empty()) {
      detail::require(static_cast<index_t>(reuse_schedule.size()) == num_hidden_layers, "reuse_schedule: expected ",
                      num_hidden_layers, " entries (one per layer), found ", reuse_schedule.size());
      detail::require(reuse_schedule[0] == 0,
                      "reuse_schedule[0]: expected 0 (layer 0 has no earlier layer to reuse from), found ",
                      reuse_schedule[0]);
      for (std::size_t l = 0; l < reuse_schedule.size(); ++l)
        detail::require(reuse_schedule[l] >= 0 && reuse_schedule[l] <= num_attention_heads, "reuse_schedule[", l,
                        "]: expected a head count in [0, ", num_attention_heads, "], found ", reuse_schedule[l]);
    }
    if (use_relative_pe)
      detail::require(pe_max_seq_length >= 1, "pe_max_seq_length: expected >= 1, found ", pe_max_seq_length);
  }
};

namespace detail {
// A config is valid, and names the score function an encoder was compiled for.
inline void validate_for(const encoder_config& config, score_function compiled) {
  config.validate();
  require(config.score == compiled, "plpi_affinity_function: expected ", name_of(compiled),
          " (the score function the model is compiled for), found ", name_of(config.score));
}
}  // namespace detail

// The reuse schedule of TensorFlow Model Garden's ReuseTransformer:
// layers 1 .. max_reuse_layer_idx reuse `reuse_attention` heads (-1: all of
// them), layer 0 and the layers after max_reuse_layer_idx reuse none.
// Throws reuseformer::error for reuse_attention outside [-1, heads] or a
// negative max_reuse_layer_idx.
[[nodiscard]] inline std::vector<index_t> reference_reuse_schedule(index_t reuse_attention, index_t max_reuse_layer_idx,
                                                                   index_t heads, index_t layers) {
  detail::require(reuse_attention >= -1 && reuse_attention <= heads,
                  "reuse_attention: expected -1 (all heads) or a head count in [0, ", heads, "], found ",
                  reuse_attention);
  detail::require(max_reuse_layer_idx >= 0, "max_reuse_layer_idx: expected >= 0, found ", max_reuse_layer_idx);
  const index_t k = reuse_attention == -1 ? heads : reuse_attention;
  std::vector<index_t> schedule(static_cast<std::size_t>(layers), 0);
  for (index_t l = 1; l < layers && l <= max_reuse_layer_idx; ++l) schedule[static_cast<std::size_t>(l)] = k;
  return schedule;
}

}  // namespace reuseformer
