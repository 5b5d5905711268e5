#pragma once
// One layer's key/value cache for incremental causal decoding (docs/semantics.md
// §Incremental decoding): exactly what later tokens of the same sequence will
// read from that layer. The stack of them is layers/kv_cache.hpp.
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

#include <algorithm>

#include "reuseformer/core/tensor_view.hpp"

namespace reuseformer::attention {

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

}  // namespace reuseformer::attention
