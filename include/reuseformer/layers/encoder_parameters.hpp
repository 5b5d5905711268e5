#pragma once
// Owned storage for every parameter of an encoder (for its score function, reuse
// schedule and relative-position option), laid out in one buffer.
//
// Layers only view parameters; something has to own them. This container does,
// for weights the program creates itself (random initialisation for benchmarks
// and tests, or values converted from another precision). Layer l holds the
// tensors layers/layer_tensors.hpp lists for it, in the table's order.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cmath>
#include <random>
#include <span>
#include <type_traits>
#include <vector>

#include "reuseformer/core/tensor_view.hpp"
#include "reuseformer/layers/config.hpp"
#include "reuseformer/layers/encoder_layer.hpp"
#include "reuseformer/layers/layer_tensors.hpp"

namespace reuseformer {

template <class T>
class encoder_parameters {
 public:
  // Allocates (zeroed) parameters for `c`. Throws reuseformer::error on an
  // invalid config.
  explicit encoder_parameters(const encoder_config& c) : config_((c.validate(), c)) {
    index_t total = 0;
    for (index_t l = 0; l < config_.num_hidden_layers; ++l) total += layer_parameter_count(config_, l);
    values_.resize(static_cast<std::size_t>(total));
  }

  [[nodiscard]] const encoder_config& config() const { return config_; }

  // Every parameter, in layout order: layer 0's tensors, then layer 1's, ...
  [[nodiscard]] std::span<T> values() { return values_; }
  [[nodiscard]] std::span<const T> values() const { return values_; }

  // Views for encoder<T>; valid while this object lives and is not moved from.
  // Layer l's views are the tensors the table has for it, with its shapes; the
  // others stay empty.
  [[nodiscard]] std::vector<encoder_layer_weights<T>> layers() const {
    std::vector<encoder_layer_weights<T>> out(static_cast<std::size_t>(config_.num_hidden_layers));
    const T* cursor = values_.data();
    for (index_t l = 0; l < config_.num_hidden_layers; ++l) {
      const layer_dims dims = layer_dims::of(config_, l);
      for_each_layer_tensor([&](const auto& row) {
        if (!row.present(dims)) return;
        auto& view = row.field(out[static_cast<std::size_t>(l)]);
        view = std::remove_cvref_t<decltype(view)>(cursor, row.shape(dims));
        cursor += row.size(dims);
      });
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
    detail::require(other.values().size() == values_.size(), "encoder_parameters: expected ", values_.size(),
                    " values to copy, found ", other.values().size());
    std::transform(other.values().begin(), other.values().end(), values_.begin(),
                   [](U x) { return static_cast<T>(x); });
  }

 private:
  encoder_config config_;
  std::vector<T> values_;
};

}  // namespace reuseformer
