#pragma once
// The key/value caches of every layer of a decoder stack, in one buffer
// (layouts: attention/layer_cache.hpp). Layers lie with nothing between them,
// so its size is exactly sum_l (F_l + H)·dh·B·L elements.

#include <cstddef>
#include <vector>

#include "reuseformer/attention/layer_cache.hpp"
#include "reuseformer/core/tensor_view.hpp"
#include "reuseformer/layers/config.hpp"

namespace reuseformer::detail {

// Values one token adds to layer `layer`'s cache: (F_l + H)·dh.
[[nodiscard]] inline index_t cache_elements_per_token(const encoder_config& c, index_t layer) {
  return (c.fresh_heads(layer) + c.num_attention_heads) * c.head_dim();
}

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

  [[nodiscard]] const attention::layer_cache<T>& layer(index_t l) const { return layers_[static_cast<std::size_t>(l)]; }
  [[nodiscard]] std::size_t size_bytes() const { return values_.size() * sizeof(T); }

 private:
  std::vector<T> values_;
  std::vector<attention::layer_cache<T>> layers_;
};

}  // namespace reuseformer::detail
