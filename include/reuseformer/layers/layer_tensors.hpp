#pragma once
// The tensors of one encoder layer, described once: each one's Hugging Face
// name, its shape as a function of the layer's dimensions, when the layer has
// it (score function, reuse count, relative positions), and its place in
// encoder_layer_weights. Parameter counts (cost model), the owned parameter
// layout (encoder_parameters), checkpoint binding and export (io/) all read
// this table, so a new score function's tensors are added here alone.
//
// Layer l of an encoder (d = hidden_size, H heads of dh = d/H, F = H - K_l
// fresh heads, d_ff = intermediate_size, P = pe_max_seq_length), in this order,
// which is also encoder_parameters' layout:
//   attention.self.query.{weight, bias}          [F*dh, d], [F*dh]   F > 0
//   attention.self.key.{weight, bias}            [F*dh, d], [F*dh]   F > 0, standard scores
//   attention.self.pairwise_factors              [F, dh, dh]         F > 0, pairwise scores
//   attention.self.value.{weight, bias}          [d, d], [d]
//   attention.output.dense.{weight, bias}        [d, d], [d]
//   attention.self.relative_position_embeddings  [F, 2P - 1]         F > 0, use_relative_pe
//   attention.output.LayerNorm.{weight, bias}    [d], [d]
//   intermediate.dense.{weight, bias}            [d_ff, d], [d_ff]
//   output.dense.{weight, bias}                  [d, d_ff], [d]
//   output.LayerNorm.{weight, bias}              [d], [d]

#include <array>
#include <cstddef>
#include <string>
#include <string_view>
#include <tuple>

#include "reuseformer/attention/score_function.hpp"
#include "reuseformer/core/error.hpp"
#include "reuseformer/core/tensor_view.hpp"
#include "reuseformer/layers/config.hpp"
#include "reuseformer/layers/encoder_layer.hpp"

namespace reuseformer {

// What a layer's tensor shapes depend on.
struct layer_dims {
  index_t layer = 0;
  index_t hidden = 0;         // d
  index_t heads = 0;          // H
  index_t head_dim = 0;       // dh
  index_t fresh = 0;          // F = H - K_l
  index_t intermediate = 0;   // d_ff
  index_t relative_span = 0;  // 2P - 1 with use_relative_pe, else 0
  score_function score = score_function::standard;

  // Layer `layer` of an encoder configured by `config` (valid, layer in [0, L)).
  [[nodiscard]] static layer_dims of(const encoder_config& config, index_t layer) {
    return {layer,
            config.hidden_size,
            config.num_attention_heads,
            config.head_dim(),
            config.fresh_heads(layer),
            config.intermediate_size,
            config.use_relative_pe ? 2 * config.pe_max_seq_length - 1 : 0,
            config.score};
  }
};

// When a layer has a tensor. Every tensor a fresh head needs is absent when the
// layer reuses all its heads.
enum class tensor_presence { always, fresh_heads, key_projection, pairwise_factors, relative_position };

// What the layer does with the caller's tensor: copies it at construction (a
// Linear's weight and bias: the product backend packs them, so the caller may
// release them once the layer is built) or keeps reading it (LayerNorm
// parameters, pairwise factors, the relative-position table: the caller keeps
// them alive; referenced_parameter_bytes() counts them).
enum class tensor_use { copied, referenced };

// One row of the table. Shape: layer_dims -> std::array<index_t, Rank>; Field:
// a reference to the tensor's view in an encoder_layer_weights<T, W>, for any T and W.
template <class Shape, class Field>
struct layer_tensor {
  std::string_view name;  // after "encoder.layer.{l}."
  tensor_presence presence;
  tensor_use use;
  Shape shape;
  Field field;

  [[nodiscard]] constexpr bool present(const layer_dims& d) const {
    switch (presence) {
      case tensor_presence::always:
        return true;
      case tensor_presence::fresh_heads:
        return d.fresh > 0;
      case tensor_presence::key_projection:
        return d.fresh > 0 && has_key_projection(d.score);
      case tensor_presence::pairwise_factors:
        return d.fresh > 0 && has_pairwise_factors(d.score);
      case tensor_presence::relative_position:
        return d.fresh > 0 && d.relative_span > 0;
    }
    return false;
  }

  // Why the layer has no such tensor (requires !present(d)).
  [[nodiscard]] std::string absence_reason(const layer_dims& d) const {
    if (d.fresh == 0) return detail::concat("layer ", d.layer, " reuses all ", d.heads, " heads");
    switch (presence) {
      case tensor_presence::key_projection:
        return detail::concat(name_of(d.score), " scores have no key projection");
      case tensor_presence::pairwise_factors:
        return detail::concat(name_of(d.score), " scores have no pairwise factors");
      case tensor_presence::relative_position:
        return "use_relative_pe is false";
      case tensor_presence::always:
      case tensor_presence::fresh_heads:
        break;
    }
    return "not part of this layer";
  }

  // Elements of the tensor when present.
  [[nodiscard]] constexpr index_t size(const layer_dims& d) const {
    index_t n = 1;
    for (const index_t e : shape(d)) n *= e;
    return n;
  }
};

namespace detail {
template <class Shape, class Field>
constexpr auto tensor_row(std::string_view name, tensor_presence presence, tensor_use use, Shape shape, Field field) {
  return layer_tensor<Shape, Field>{name, presence, use, shape, field};
}
}  // namespace detail

// The table (see the top of this file).
inline constexpr auto layer_tensor_table = std::tuple{
    detail::tensor_row(
        "attention.self.query.weight", tensor_presence::fresh_heads, tensor_use::copied,
        [](const layer_dims& d) {
          return std::array{d.fresh * d.head_dim, d.hidden};
        },
        [](auto& w) -> auto& { return w.attention.query.weight; }),
    detail::tensor_row(
        "attention.self.query.bias", tensor_presence::fresh_heads, tensor_use::copied,
        [](const layer_dims& d) { return std::array{d.fresh * d.head_dim}; },
        [](auto& w) -> auto& { return w.attention.query.bias; }),
    detail::tensor_row(
        "attention.self.key.weight", tensor_presence::key_projection, tensor_use::copied,
        [](const layer_dims& d) {
          return std::array{d.fresh * d.head_dim, d.hidden};
        },
        [](auto& w) -> auto& { return w.attention.key.weight; }),
    detail::tensor_row(
        "attention.self.key.bias", tensor_presence::key_projection, tensor_use::copied,
        [](const layer_dims& d) { return std::array{d.fresh * d.head_dim}; },
        [](auto& w) -> auto& { return w.attention.key.bias; }),
    detail::tensor_row(
        "attention.self.pairwise_factors", tensor_presence::pairwise_factors, tensor_use::referenced,
        [](const layer_dims& d) {
          return std::array{d.fresh, d.head_dim, d.head_dim};
        },
        [](auto& w) -> auto& { return w.attention.pairwise_factors; }),
    detail::tensor_row(
        "attention.self.value.weight", tensor_presence::always, tensor_use::copied,
        [](const layer_dims& d) {
          return std::array{d.hidden, d.hidden};
        },
        [](auto& w) -> auto& { return w.attention.value.weight; }),
    detail::tensor_row(
        "attention.self.value.bias", tensor_presence::always, tensor_use::copied,
        [](const layer_dims& d) { return std::array{d.hidden}; },
        [](auto& w) -> auto& { return w.attention.value.bias; }),
    detail::tensor_row(
        "attention.output.dense.weight", tensor_presence::always, tensor_use::copied,
        [](const layer_dims& d) {
          return std::array{d.hidden, d.hidden};
        },
        [](auto& w) -> auto& { return w.attention.output.weight; }),
    detail::tensor_row(
        "attention.output.dense.bias", tensor_presence::always, tensor_use::copied,
        [](const layer_dims& d) { return std::array{d.hidden}; },
        [](auto& w) -> auto& { return w.attention.output.bias; }),
    detail::tensor_row(
        "attention.self.relative_position_embeddings", tensor_presence::relative_position, tensor_use::referenced,
        [](const layer_dims& d) {
          return std::array{d.fresh, d.relative_span};
        },
        [](auto& w) -> auto& { return w.attention.relative_position; }),
    detail::tensor_row(
        "attention.output.LayerNorm.weight", tensor_presence::always, tensor_use::referenced,
        [](const layer_dims& d) { return std::array{d.hidden}; },
        [](auto& w) -> auto& { return w.attention_norm.weight; }),
    detail::tensor_row(
        "attention.output.LayerNorm.bias", tensor_presence::always, tensor_use::referenced,
        [](const layer_dims& d) { return std::array{d.hidden}; },
        [](auto& w) -> auto& { return w.attention_norm.bias; }),
    detail::tensor_row(
        "intermediate.dense.weight", tensor_presence::always, tensor_use::copied,
        [](const layer_dims& d) {
          return std::array{d.intermediate, d.hidden};
        },
        [](auto& w) -> auto& { return w.feed_forward.intermediate.weight; }),
    detail::tensor_row(
        "intermediate.dense.bias", tensor_presence::always, tensor_use::copied,
        [](const layer_dims& d) { return std::array{d.intermediate}; },
        [](auto& w) -> auto& { return w.feed_forward.intermediate.bias; }),
    detail::tensor_row(
        "output.dense.weight", tensor_presence::always, tensor_use::copied,
        [](const layer_dims& d) {
          return std::array{d.hidden, d.intermediate};
        },
        [](auto& w) -> auto& { return w.feed_forward.output.weight; }),
    detail::tensor_row(
        "output.dense.bias", tensor_presence::always, tensor_use::copied,
        [](const layer_dims& d) { return std::array{d.hidden}; },
        [](auto& w) -> auto& { return w.feed_forward.output.bias; }),
    detail::tensor_row(
        "output.LayerNorm.weight", tensor_presence::always, tensor_use::referenced,
        [](const layer_dims& d) { return std::array{d.hidden}; },
        [](auto& w) -> auto& { return w.output_norm.weight; }),
    detail::tensor_row(
        "output.LayerNorm.bias", tensor_presence::always, tensor_use::referenced,
        [](const layer_dims& d) { return std::array{d.hidden}; }, [](auto& w) -> auto& { return w.output_norm.bias; }),
};

// Calls f(row) for each row of the table, in order.
template <class F>
constexpr void for_each_layer_tensor(F&& f) {
  std::apply([&](const auto&... row) { (f(row), ...); }, layer_tensor_table);
}

// Parameters of layer `layer` of an encoder configured by `config` (valid):
// the elements of every tensor it has.
[[nodiscard]] inline index_t layer_parameter_count(const encoder_config& config, index_t layer) {
  const layer_dims d = layer_dims::of(config, layer);
  index_t count = 0;
  for_each_layer_tensor([&](const auto& row) {
    if (row.present(d)) count += row.size(d);
  });
  return count;
}

// The "encoder.layer.{l}." prefix of layer l's tensor names.
[[nodiscard]] inline std::string layer_tensor_prefix(index_t layer) {
  return detail::concat("encoder.layer.", layer, ".");
}

}  // namespace reuseformer
