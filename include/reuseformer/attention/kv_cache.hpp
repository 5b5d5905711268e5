#pragma once
// The key/value cache of incremental causal decoding (docs/semantics.md
// §Incremental decoding): for each layer, exactly what later tokens of the same
// sequence will read from it.
//
// Layer l with F_l = H - K_l fresh heads keeps, per token,
//   the keys of its fresh heads  F_l·dh values  (standard: K; symmetric and
//                                                 pairwise: Q, the operand that
//                                                 plays the key's role)
//   the values of all heads      H·dh values
// A reused head needs no key: its probability row for a new token is the row
// the layer below computes for that token in the same step.
//
// Layouts (B sequences of up to L tokens, dh = d / H):
//   keys   [B, F_l, dh, L]  transposed, so that one query's logits read each
//                           key dimension as one contiguous row
//   values [B, H, L, dh]
// All layers lie in one buffer with nothing between them, so its size is
// exactly sum_l (F_l + H)·dh·B·L elements.

#include <algorithm>
#include <cstddef>
#include <vector>

#include "reuseformer/core/error.hpp"
#include "reuseformer/core/tensor_view.hpp"
#include "reuseformer/layers/config.hpp"

namespace reuseformer::attention {

// Values one token adds to layer `layer`'s cache: (F_l + H)·dh.
[[nodiscard]] inline index_t cache_elements_per_token(const encoder_config& c, index_t layer) {
  return (c.fresh_heads(layer) + c.num_attention_heads) * c.head_dim();
}

// One layer's cache, viewing the caller's memory (layouts above).
template <class T>
struct layer_cache {
  T* keys = nullptr;    // [B, F, dh, L]
  T* values = nullptr;  // [B, H, L, dh]
  index_t fresh_heads = 0, heads = 0, head_dim = 0, max_length = 0;

  // Fresh head h's keys of sequence b: [dh, L], row stride L.
  [[nodiscard]] T* head_keys(index_t b, index_t h) const {
    return keys + (b * fresh_heads + h) * head_dim * max_length;
  }
  // Head h's values of sequence b: [L, dh].
  [[nodiscard]] T* head_values(index_t b, index_t h) const { return values + (b * heads + h) * max_length * head_dim; }

  // Stores token `position` of sequence b from its key row [F·dh] and value row [H·dh].
  void store(index_t b, index_t position, const T* key, const T* value) const {
    for (index_t h = 0; h < fresh_heads; ++h) {
      T* column = head_keys(b, h) + position;
      for (index_t c = 0; c < head_dim; ++c) column[c * max_length] = key[h * head_dim + c];
    }
    for (index_t h = 0; h < heads; ++h)
      std::copy_n(value + h * head_dim, head_dim, head_values(b, h) + position * head_dim);
  }
};

// The caches of every layer of a stack configured by `config`, for `batch`
// sequences of up to `max_length` tokens, allocated (zeroed) once.
template <class T>
class kv_cache {
 public:
  // Exact bytes: sum over layers of cache_elements_per_token · batch · max_length · sizeof(T).
  [[nodiscard]] static std::size_t bytes(const encoder_config& config, index_t batch, index_t max_length) {
    index_t elements = 0;
    for (index_t l = 0; l < config.num_hidden_layers; ++l) elements += cache_elements_per_token(config, l);
    return static_cast<std::size_t>(elements * batch * max_length) * sizeof(T);
  }

  // Requires a valid config, batch >= 1 and max_length >= 1.
  kv_cache(const encoder_config& config, index_t batch, index_t max_length)
      : values_(bytes(config, batch, max_length) / sizeof(T)) {
    const index_t heads = config.num_attention_heads, dh = config.head_dim();
    T* cursor = values_.data();
    for (index_t l = 0; l < config.num_hidden_layers; ++l) {
      const index_t fresh = config.fresh_heads(l);
      layers_.push_back({cursor, cursor + batch * fresh * dh * max_length, fresh, heads, dh, max_length});
      cursor += batch * cache_elements_per_token(config, l) * max_length;
    }
  }

  [[nodiscard]] const layer_cache<T>& layer(index_t l) const { return layers_[static_cast<std::size_t>(l)]; }
  [[nodiscard]] std::size_t size_bytes() const { return values_.size() * sizeof(T); }

 private:
  std::vector<T> values_;
  std::vector<layer_cache<T>> layers_;
};

}  // namespace reuseformer::attention
