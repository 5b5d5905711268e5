#pragma once
// The work and memory of an encoder forward pass, per layer and in total, for
// any reuse schedule, counted exactly over each product's extent (below), not
// estimated asymptotically.
//
// Multiply-adds per layer (rows = B*N, F = H - K_l fresh heads, dh = d/H,
// pairs = query/key pairs one head multiplies: N^2, or under a causal mask the
// blocked count attention::block_query_key_pairs(N, true); logit pairs = pairs,
// or N(N+1)/2 when the score function's logits are symmetric):
//   query/key projections  p * rows * d * F*dh     (p = 2 with a key projection,
//                                                   1 without; skipped for reused heads)
//   pairwise transform     rows * F * dh^2         (Q P; rows * F * dh for diagonal P)
//   value projection       rows * d^2
//   scores Q Kᵀ            B * F * logit pairs * dh (skipped for reused heads)
//   context A V            B * H * pairs * dh
//   output projection      rows * d^2
//   feed-forward           2 * rows * d * d_ff
// plus B * F * N^2 softmax exponentials (N(N+1)/2 per head under a causal mask:
// row i exponentiates its i+1 visible keys), not multiply-adds, reported apart.
// Reusing K heads therefore saves 2*rows*d*K*dh + B*K*pairs*dh multiply-adds
// and B*K*pairs exponentials per layer (docs/semantics.md §Score reuse).
//
// What is counted is the extent of each product the layer asks for, which is
// what the kernels compute except where they round it up to whole register
// tiles of MR rows and NR columns (12 x 32 for float on AVX-512): a product's
// last partial tile, and, for symmetric logits, the tiles the diagonal crosses,
// which the triangular product (gemm/triangular.hpp) computes whole: up to
// NR + MR - 2 entries per row beyond the N(N+1)/2 counted, at most 2(NR + MR - 2)/(N + 1)
// more than counted (16% at N = 512 for float on AVX-512). Those are not counted.
//
// Decoding (layers/decoder.hpp) is costed per generated token and layer, for a
// token that attends to n keys (its own included):
//   multiply-adds  p * d * F*dh + F * dh^2 (pairwise; F * dh diagonal) + d^2
//                  (value) + F * n * dh (scores) + H * n * dh (context) + d^2
//                  (output) + 2 * d * d_ff (feed-forward)
//   bytes read     the layer's parameters once per step, shared by the batch's
//                  B tokens, plus its cache: (F + H) * dh * n values
//   cache          (F + H) * dh values per token (layers/kv_cache.hpp)
// so reusing K heads saves K*dh cache values per token and K*dh*n per step's
// read, besides p * d * K*dh + K*n*dh multiply-adds.

#include <cstddef>
#include <vector>

#include "reuseformer/layers/kv_cache.hpp"
#include "reuseformer/attention/scaled_dot_product.hpp"
#include "reuseformer/layers/config.hpp"
#include "reuseformer/layers/layer_tensors.hpp"

namespace reuseformer::analysis {

struct layer_cost {
  index_t reused_heads = 0;
  double query_key_projection = 0, pairwise_transform = 0, value_projection = 0, scores = 0, context = 0,
         output_projection = 0, feed_forward = 0;  // multiply-adds
  double softmax_exponentials = 0;                 // one per visible (query, key) pair of a fresh head
  std::size_t parameter_bytes = 0;

  [[nodiscard]] double multiply_adds() const {
    return query_key_projection + pairwise_transform + value_projection + scores + context + output_projection +
           feed_forward;
  }
};

struct encoder_cost {
  std::vector<layer_cost> layers;
  double multiply_adds = 0;
  double softmax_exponentials = 0;
  std::size_t parameter_bytes = 0;
  std::size_t workspace_bytes = 0;    // filled by measure() from the model
  std::size_t reuse_state_bytes = 0;  // filled by measure() from the model
};

// Work and parameter bytes of a forward pass of [batch, seq] through an encoder
// of `config` with scalar type T. Requires a valid config.
template <class T>
[[nodiscard]] encoder_cost cost(const encoder_config& config, index_t batch, index_t seq) {
  const double d = static_cast<double>(config.hidden_size), dh = static_cast<double>(config.head_dim());
  const double rows = static_cast<double>(batch * seq), d_ff = static_cast<double>(config.intermediate_size);
  const double pairs = static_cast<double>(batch * attention::block_query_key_pairs<T>(seq, config.causal));
  const double logit_pairs =
      static_cast<double>(batch * attention::logit_pairs<T>(seq, config.causal, has_symmetric_logits(config.score)));
  const double projections = has_key_projection(config.score) ? 2 : 1;
  const double transform = !has_pairwise_factors(config.score)                 ? 0
                           : config.score == score_function::pairwise_diagonal ? dh
                                                                               : dh * dh;
  const double exponentials = static_cast<double>(batch * (config.causal ? seq * (seq + 1) / 2 : seq * seq));
  encoder_cost total;
  for (index_t l = 0; l < config.num_hidden_layers; ++l) {
    layer_cost c;
    c.reused_heads = config.reused_heads(l);
    const index_t fresh = config.fresh_heads(l);
    const double f = static_cast<double>(fresh), h = static_cast<double>(config.num_attention_heads);
    c.query_key_projection = projections * rows * d * f * dh;
    c.pairwise_transform = rows * f * transform;
    c.value_projection = rows * d * d;
    c.scores = f * logit_pairs * dh;
    c.context = h * pairs * dh;
    c.output_projection = rows * d * d;
    c.feed_forward = 2 * rows * d * d_ff;
    c.softmax_exponentials = f * exponentials;
    c.parameter_bytes = static_cast<std::size_t>(layer_parameter_count(config, l)) * sizeof(T);
    total.multiply_adds += c.multiply_adds();
    total.softmax_exponentials += c.softmax_exponentials;
    total.parameter_bytes += c.parameter_bytes;
    total.layers.push_back(c);
  }
  return total;
}

// cost() plus the memory a built model reports for [batch, seq] on `threads` threads.
template <class Model>
[[nodiscard]] encoder_cost measure(const Model& model, index_t batch, index_t seq, int threads) {
  using T = typename Model::value_type;
  encoder_cost c = cost<T>(model.config(), batch, seq);
  c.workspace_bytes = model.workspace_bytes(batch, seq, threads);
  c.reuse_state_bytes = model.reuse_state_bytes(batch, seq);
  return c;
}

// One generated token's work in one layer (see the top of this file).
struct layer_decode_cost {
  index_t reused_heads = 0;
  double multiply_adds = 0;
  double softmax_exponentials = 0;  // F * n
  double weight_bytes = 0;          // the layer's parameter bytes / B
  double cache_bytes_read = 0;      // (F + H) * dh * n * sizeof(T)
  std::size_t cache_bytes_per_token = 0;

  [[nodiscard]] double bytes_read() const { return weight_bytes + cache_bytes_read; }
};

struct decode_cost {
  std::vector<layer_decode_cost> layers;
  double multiply_adds = 0, bytes_read = 0;  // per generated token, all layers
  std::size_t cache_bytes_per_token = 0;     // all layers

  // The cache of `batch` sequences of up to `max_length` tokens.
  [[nodiscard]] std::size_t cache_bytes(index_t batch, index_t max_length) const {
    return cache_bytes_per_token * static_cast<std::size_t>(batch * max_length);
  }
};

// Per generated token, in a step of `batch` sequences whose tokens attend to
// `keys` keys each, through a stack of `config` with scalar type T.
// Requires a valid config, batch >= 1, keys >= 1.
template <class T>
[[nodiscard]] decode_cost decoding_cost(const encoder_config& config, index_t batch, index_t keys) {
  const double d = static_cast<double>(config.hidden_size), dh = static_cast<double>(config.head_dim());
  const double d_ff = static_cast<double>(config.intermediate_size), n = static_cast<double>(keys);
  const double h = static_cast<double>(config.num_attention_heads);
  const double projections = has_key_projection(config.score) ? 2 : 1;
  const double transform = !has_pairwise_factors(config.score)                 ? 0
                           : config.score == score_function::pairwise_diagonal ? dh
                                                                               : dh * dh;
  decode_cost total;
  for (index_t l = 0; l < config.num_hidden_layers; ++l) {
    layer_decode_cost c;
    c.reused_heads = config.reused_heads(l);
    const double f = static_cast<double>(config.fresh_heads(l));
    c.multiply_adds = projections * d * f * dh + f * transform + 2 * d * d + f * n * dh + h * n * dh + 2 * d * d_ff;
    c.softmax_exponentials = f * n;
    c.weight_bytes = static_cast<double>(layer_parameter_count(config, l) * sizeof(T)) / static_cast<double>(batch);
    c.cache_bytes_per_token = static_cast<std::size_t>(detail::cache_elements_per_token(config, l)) * sizeof(T);
    c.cache_bytes_read = static_cast<double>(c.cache_bytes_per_token) * n;
    total.multiply_adds += c.multiply_adds;
    total.bytes_read += c.bytes_read();
    total.cache_bytes_per_token += c.cache_bytes_per_token;
    total.layers.push_back(c);
  }
  return total;
}

}  // namespace reuseformer::analysis
