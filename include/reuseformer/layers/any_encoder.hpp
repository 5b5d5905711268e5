#pragma once
// An encoder whose score function is chosen at run time, from
// encoder_config::score (what config.json's `plpi_affinity_function` names).
//
//   reuseformer::any_encoder<float> model(config, layer_weights);   // any config.score
//   auto ws = model.make_workspace(batch, seq, threads);
//   model.forward(input, output, ws, attention_mask);
//
// It holds one compiled encoder<T, Score, Arch, Products> for config.score; each call
// dispatches once to it (one branch per call, not per token or per layer), so a
// forward pass runs the same code as the compile-time encoder and, like it,
// allocates nothing. Use encoder<T, Score, Arch, Products> when the score
// function is known when compiling.

#include <concepts>
#include <cstddef>
#include <iterator>
#include <limits>
#include <span>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "reuseformer/attention/attention_mask.hpp"
#include "reuseformer/attention/score_function.hpp"
#include "reuseformer/core/tensor_view.hpp"
#include "reuseformer/core/workspace.hpp"
#include "reuseformer/layers/config.hpp"
#include "reuseformer/layers/encoder.hpp"
#include "reuseformer/layers/product_backend.hpp"
#include "reuseformer/simd/arch.hpp"

namespace reuseformer {

namespace detail {
// std::variant<encoder<T, F, Arch, Products>...> over every score function F.
template <class T, class Arch, class Products, std::size_t... I>
auto encoder_variant(std::index_sequence<I...>) -> std::variant<encoder<T, all_score_functions[I], Arch, Products>...>;
}  // namespace detail

// Products: the product backend of its Linears (layers/product_backend.hpp).
template <class T, class Arch = simd::default_arch, class Products = packed_products>
class any_encoder {
 public:
  using value_type = T;

  // Throws reuseformer::error unless `config` is valid (any score function).
  static void validate(const encoder_config& config) { config.validate(); }

  // As encoder<T, c.score, Arch, Products>(c, weights, prefix): the layers view
  // the tensors in `weights`, which the caller keeps alive; the same errors.
  template <class W = T>
    requires packs_weights_of<Products, T, Arch, W>
  any_encoder(const encoder_config& c, const std::vector<encoder_layer_weights<T, W>>& weights,
              std::string_view prefix = "")
      : encoder_(build(c, weights, prefix)) {}
  // As encoder<T, c.score, Arch, Products>(c, weights_of, prefix): one layer at
  // a time, layer l built from weights_of(l) before the next call.
  template <class LayerWeights>
    requires std::constructible_from<encoder<T, score_function::standard, Arch, Products>, const encoder_config&,
                                     LayerWeights&, std::string_view>
  any_encoder(const encoder_config& c, LayerWeights&& weights_of, std::string_view prefix = "")
      : encoder_(build(c, weights_of, prefix)) {}

  [[nodiscard]] const encoder_config& config() const {
    return std::visit([](const auto& e) -> const encoder_config& { return e.config(); }, encoder_);
  }
  [[nodiscard]] score_function score() const { return config().score; }
  [[nodiscard]] index_t hidden_size() const { return config().hidden_size; }
  [[nodiscard]] index_t heads() const { return config().num_attention_heads; }
  [[nodiscard]] index_t attention_layers() const { return config().num_hidden_layers; }

  // As encoder: bytes of the parameters the model holds, and of those the part
  // that is the caller's tensors, still read.
  [[nodiscard]] std::size_t parameter_bytes() const {
    return std::visit([](const auto& e) { return e.parameter_bytes(); }, encoder_);
  }
  [[nodiscard]] std::size_t referenced_parameter_bytes() const {
    return std::visit([](const auto& e) { return e.referenced_parameter_bytes(); }, encoder_);
  }
  // As encoder, for a dense batch (batch, seq) or a packed one (offsets).
  template <class... Shape>
  [[nodiscard]] std::size_t reuse_state_bytes(const Shape&... shape) const {
    return std::visit([&](const auto& e) { return e.reuse_state_bytes(shape...); }, encoder_);
  }
  [[nodiscard]] std::size_t workspace_bytes(index_t batch, index_t seq, int threads = 1) const {
    return std::visit([&](const auto& e) { return e.workspace_bytes(batch, seq, threads); }, encoder_);
  }
  [[nodiscard]] std::size_t workspace_bytes(std::span<const index_t> offsets, int threads = 1) const {
    return std::visit([&](const auto& e) { return e.workspace_bytes(offsets, threads); }, encoder_);
  }
  [[nodiscard]] workspace make_workspace(index_t batch, index_t seq, int threads = 1,
                                         std::size_t limit_bytes = std::numeric_limits<std::size_t>::max()) const {
    return std::visit([&](const auto& e) { return e.make_workspace(batch, seq, threads, limit_bytes); }, encoder_);
  }
  [[nodiscard]] workspace make_workspace(std::span<const index_t> offsets, int threads = 1,
                                         std::size_t limit_bytes = std::numeric_limits<std::size_t>::max()) const {
    return std::visit([&](const auto& e) { return e.make_workspace(offsets, threads, limit_bytes); }, encoder_);
  }

  // As encoder::forward, in each of its forms (dense, dense with a padding
  // mode, packed): shapes, errors and guarantees (no allocation) alike.
  void forward(tensor_view<const T, 3> input, tensor_view<T, 3> output, workspace& ws, const attention_mask& mask = {},
               const attention_io<T>& io = {}) const {
    std::visit([&](const auto& e) { e.forward(input, output, ws, mask, io); }, encoder_);
  }
  void forward(tensor_view<const T, 3> input, tensor_view<T, 3> output, workspace& ws, const attention_mask& mask,
               padding mode) const {
    std::visit([&](const auto& e) { e.forward(input, output, ws, mask, mode); }, encoder_);
  }
  void forward(tensor_view<const T, 2> tokens, tensor_view<T, 2> output, std::span<const index_t> offsets,
               workspace& ws, const packed_attention_io<T>& io = {}) const {
    std::visit([&](const auto& e) { e.forward(tokens, output, offsets, ws, io); }, encoder_);
  }

  // Calls f(e) with the compiled encoder<T, config().score, Arch, Products>, for what
  // only the compile-time type offers (its layers, its reuse plan).
  template <class F>
  decltype(auto) visit_compiled(F&& f) const {
    return std::visit(std::forward<F>(f), encoder_);
  }

 private:
  using compiled =
      decltype(detail::encoder_variant<T, Arch, Products>(std::make_index_sequence<std::size(all_score_functions)>{}));

  // The encoder for c.score, from either form of weights.
  template <class Weights>
  static compiled build(const encoder_config& c, Weights& weights, std::string_view prefix) {
    validate(c);
    return visit(c.score, [&]<score_function Score>() {
      return compiled(std::in_place_type<encoder<T, Score, Arch, Products>>, c, weights, prefix);
    });
  }
  compiled encoder_;
};

}  // namespace reuseformer
