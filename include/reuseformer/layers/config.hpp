#pragma once
// Run-time configuration of an encoder, with Hugging Face BERT's names.

#include <cmath>

#include "reuseformer/core/error.hpp"
#include "reuseformer/core/tensor_view.hpp"

namespace reuseformer {

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

  [[nodiscard]] index_t head_dim() const { return hidden_size / num_attention_heads; }

  // Throws reuseformer::error naming the first invalid key.
  void validate() const {
    detail::require(hidden_size >= 1, "hidden_size: expected >= 1, found ", hidden_size);
    detail::require(num_attention_heads >= 1, "num_attention_heads: expected >= 1, found ",
                    num_attention_heads);
    detail::require(hidden_size % num_attention_heads == 0,
                    "num_attention_heads: expected a divisor of hidden_size ", hidden_size,
                    ", found ", num_attention_heads);
    detail::require(intermediate_size >= 1, "intermediate_size: expected >= 1, found ",
                    intermediate_size);
    detail::require(num_hidden_layers >= 0, "num_hidden_layers: expected >= 0, found ",
                    num_hidden_layers);
    detail::require(std::isfinite(layer_norm_eps) && layer_norm_eps > 0,
                    "layer_norm_eps: expected a finite value > 0, found ", layer_norm_eps);
  }
};

}  // namespace reuseformer
