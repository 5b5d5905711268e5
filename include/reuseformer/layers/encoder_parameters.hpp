#pragma once
// Owned storage for every parameter of an encoder (for its score function, reuse
// schedule and relative-position option), laid out in one buffer.
//
// Layers only view parameters; something has to own them. This container does,
// for weights the program creates itself (random initialisation for benchmarks
// and tests, or values converted from another precision). The tensors of layer
// l appear in Hugging Face order: query, key (standard scores), pairwise factors
// (pairwise scores), value, attention output, relative-position table,
// attention LayerNorm, intermediate, output, output LayerNorm (weight, bias each).

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cmath>
#include <random>
#include <span>
#include <vector>

#include "reuseformer/core/tensor_view.hpp"
#include "reuseformer/layers/config.hpp"
#include "reuseformer/layers/encoder_layer.hpp"

namespace reuseformer {

template <class T>
class encoder_parameters {
 public:
  // Allocates (zeroed) parameters for `config`. Throws reuseformer::error on an
  // invalid config.
  explicit encoder_parameters(const encoder_config& config) : config_((config.validate(), config)) {
    index_t total = 0;
    for (index_t l = 0; l < config_.num_hidden_layers; ++l) total += config_.layer_parameter_count(l);
    values_.resize(static_cast<std::size_t>(total));
  }

  [[nodiscard]] const encoder_config& config() const { return config_; }

  // Every parameter, in layout order: layer 0's tensors, then layer 1's, ...
  [[nodiscard]] std::span<T> values() { return values_; }
  [[nodiscard]] std::span<const T> values() const { return values_; }

  // Views for encoder<T>; valid while this object lives and is not moved from.
  // Layer l's query and key have (H - K_l) * dh rows (none when K_l = H; no key
  // unless standard scores), pairwise scores add factors [H - K_l, dh, dh], and
  // with use_relative_pe it has a [H - K_l, 2P - 1] relative-position table.
  [[nodiscard]] std::vector<encoder_layer_weights<T>> layers() const {
    std::vector<encoder_layer_weights<T>> out;
    const T* cursor = values_.data();
    const auto take = [&](index_t count) {
      const T* start = count > 0 ? cursor : nullptr;
      cursor += count;
      return start;
    };
    const auto linear = [&](index_t out_features, index_t in_features) {
      const T* w = take(out_features * in_features);
      return linear_weights<T>{{w, {out_features, in_features}}, {take(out_features), {out_features}}};
    };
    const index_t d = config_.hidden_size, d_ff = config_.intermediate_size, dh = config_.head_dim();
    const auto norm = [&] {
      const T* w = take(d);
      return layer_norm_weights<T>{{w, {d}}, {take(d), {d}}};
    };
    for (index_t l = 0; l < config_.num_hidden_layers; ++l) {
      const index_t fresh = config_.fresh_heads(l);
      encoder_layer_weights<T> layer;
      layer.attention.query = linear(fresh * dh, d);
      if (has_key_projection(config_.score)) layer.attention.key = linear(fresh * dh, d);
      if (has_pairwise_factors(config_.score) && fresh > 0)
        layer.attention.pairwise_factors = {take(fresh * dh * dh), {fresh, dh, dh}};
      layer.attention.value = linear(d, d);
      layer.attention.output = linear(d, d);
      if (config_.use_relative_pe && fresh > 0) {
        const index_t span = 2 * config_.pe_max_seq_length - 1;
        layer.attention.relative_position = {take(fresh * span), {fresh, span}};
      }
      layer.attention_norm = norm();
      layer.feed_forward.intermediate = linear(d_ff, d);
      layer.feed_forward.output = linear(d, d_ff);
      layer.output_norm = norm();
      out.push_back(layer);
    }
    return out;
  }

  // Fills every weight and bias with N(0, stddev), every LayerNorm gain with
  // 1 + N(0, stddev), and pairwise factors with I + N(0, stddev) made to meet
  // their constraint (diagonal: off-diagonal zeroed; symmetric: the lower
  // triangle mirrored), deterministically from `seed` (same seed, same values, on
  // every platform: the normal deviates come from std::mt19937_64 through a
  // Box-Muller transform, not from the implementation-defined std::normal_distribution).
  void fill_random(std::uint64_t seed, double stddev = 0.02) {
    std::mt19937_64 bits(seed);
    const auto uniform = [&] { return (static_cast<double>(bits() >> 11) + 0.5) * 0x1.0p-53; };
    const auto normal = [&] {
      constexpr double two_pi = 6.283185307179586476925286766559;
      return std::sqrt(-2.0 * std::log(uniform())) * std::cos(two_pi * uniform());
    };
    for (T& v : values_) v = static_cast<T>(stddev * normal());
    const auto writable = [&](const T* p) { return values_.data() + (p - values_.data()); };  // the same bytes
    for (const auto& layer : layers()) {
      for (const auto& gain : {layer.attention_norm.weight, layer.output_norm.weight})
        std::for_each(writable(gain.data()), writable(gain.data()) + gain.size(), [](T& x) { x += T(1); });
      const tensor_view<const T, 3>& factors = layer.attention.pairwise_factors;
      const index_t dh = config_.head_dim();
      for (index_t h = 0; h < factors.extent(0); ++h) {
        T* p = writable(&factors(h, 0, 0));
        for (index_t i = 0; i < dh; ++i) {
          p[i * dh + i] += T(1);
          for (index_t j = 0; j < i; ++j) {
            if (config_.score == score_function::pairwise_diagonal) p[i * dh + j] = p[j * dh + i] = T(0);
            if (config_.score == score_function::pairwise_symmetric) p[j * dh + i] = p[i * dh + j];
          }
        }
      }
    }
  }

  // Copies every value from `other` (same config), converting the scalar type.
  template <class U>
  void assign_from(const encoder_parameters<U>& other) {
    detail::require(other.values().size() == values_.size(),
                    "encoder_parameters: expected ", values_.size(), " values to copy, found ",
                    other.values().size());
    std::transform(other.values().begin(), other.values().end(), values_.begin(),
                   [](U x) { return static_cast<T>(x); });
  }

 private:
  encoder_config config_;
  std::vector<T> values_;
};

}  // namespace reuseformer
