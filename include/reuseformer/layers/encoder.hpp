#pragma once
// A stack of L encoder layers applied in order to a [B, N, d] batch, with the
// reuse state (docs/semantics.md §Score reuse) flowing from layer to layer.
//
//   reuseformer::encoder<float> model(config, layer_weights);
//   auto ws = model.make_workspace(batch, seq, threads);    // once
//   model.forward(input, output, ws, attention_mask);      // many times, no allocation
// or, for sequences of different lengths without padding (docs/semantics.md
// §Packed batches), tokens [T, d] and offsets [B + 1]:
//   auto ws = model.make_workspace(offsets, threads);
//   model.forward(tokens, output, offsets, ws);

#include <concepts>
#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "reuseformer/attention/reuse_state.hpp"
#include "reuseformer/core/error.hpp"
#include "reuseformer/core/sequences.hpp"
#include "reuseformer/core/workspace.hpp"
#include "reuseformer/layers/config.hpp"
#include "reuseformer/layers/encoder_layer.hpp"
#include "reuseformer/layers/forward_interface.hpp"

namespace reuseformer {

namespace detail {
// weights as a source of layer weights (encoder's layer-by-layer constructor),
// once its count is checked against c.
template <class T, class W>
auto each_layer_of(const encoder_config& c, const std::vector<encoder_layer_weights<T, W>>& weights) {
  require(static_cast<index_t>(weights.size()) == c.num_hidden_layers, "num_hidden_layers: expected ",
          c.num_hidden_layers, " layers of weights, found ", weights.size());
  return [&weights](index_t l) -> const encoder_layer_weights<T, W>& { return weights[static_cast<std::size_t>(l)]; };
}
}  // namespace detail

// Products: the product backend of its Linears (layers/product_backend.hpp).
template <class T, score_function Score = score_function::standard, class Arch = simd::default_arch,
          class Products = packed_products>
class encoder : public detail::forward_interface<encoder<T, Score, Arch, Products>, T> {
 public:
  static constexpr bool residual = true;
  static constexpr score_function scores = Score;
  using value_type = T;

  // Throws reuseformer::error unless `config` is valid and names Score.
  static void validate(const encoder_config& config) { detail::validate_for(config, Score); }

  // The layers view the tensors in `weights` (one entry per layer; W, the
  // element type of the Linears' weights: T, or bfloat16 where Products takes
  // it, see linear_weights); the caller keeps them alive. Throws
  // reuseformer::error on an invalid config (including its reuse schedule), a
  // config whose score function is not Score, a layer count other than
  // c.num_hidden_layers, or a tensor that does not fit the layer's schedule and
  // score function (named as
  // prefix + "encoder.layer.{i}.attention.self.query.weight" and so on; a
  // checkpoint loader passes its root, e.g. "bert.").
  template <class W = T>
    requires packs_weights_of<Products, T, Arch, W>
  encoder(const encoder_config& c, const std::vector<encoder_layer_weights<T, W>>& weights,
          std::string_view prefix = "")
      : encoder(c, (validate(c), detail::each_layer_of(c, weights)), prefix) {}

  // The same, one layer at a time: weights_of(l), for l = 0, 1, ... in order
  // and once each, gives layer l's tensors (an encoder_layer_weights<T, W>),
  // which layer l is built from before the next call. The tensors a layer
  // copies (its Linears' weights and biases: tensor_use::copied in
  // layer_tensors.hpp) need live only until that next call, the others as long
  // as the encoder: a loader that converts tensors holds one layer's converted
  // copies at a time.
  template <class LayerWeights>
    requires std::constructible_from<encoder_layer<T, Score, Arch, Products>, const encoder_config&,
                                     std::invoke_result_t<LayerWeights&, index_t>, index_t, std::string>
  encoder(const encoder_config& c, LayerWeights&& weights_of, std::string_view prefix = "")
      : config_((validate(c), c)),
        reuse_(c.reuse_schedule.empty() ? std::vector<index_t>(static_cast<std::size_t>(c.num_hidden_layers), 0)
                                        : c.reuse_schedule,
               c.num_attention_heads) {
    layers_.reserve(static_cast<std::size_t>(c.num_hidden_layers));
    for (index_t l = 0; l < c.num_hidden_layers; ++l)
      layers_.emplace_back(c, weights_of(l), l, std::string(prefix) + "encoder.layer." + std::to_string(l) + ".");
  }

  [[nodiscard]] const encoder_config& config() const { return config_; }
  [[nodiscard]] index_t hidden_size() const { return config_.hidden_size; }
  [[nodiscard]] index_t heads() const { return config_.num_attention_heads; }
  [[nodiscard]] index_t attention_layers() const { return config_.num_hidden_layers; }
  [[nodiscard]] index_t first_reused_heads() const { return 0; }  // layer 0 never reuses
  [[nodiscard]] const std::vector<encoder_layer<T, Score, Arch, Products>>& layers() const { return layers_; }
  [[nodiscard]] const attention::reuse_state_plan& reuse_plan() const { return reuse_; }
  [[nodiscard]] std::size_t parameter_bytes() const {
    std::size_t bytes = 0;
    for (const auto& layer : layers_) bytes += layer.parameter_bytes();
    return bytes;
  }
  // The part of parameter_bytes() that is the caller's memory, still read by
  // the layers (LayerNorm parameters, relative-position tables, pairwise
  // factors); the rest is packed weights the encoder owns.
  [[nodiscard]] std::size_t referenced_parameter_bytes() const {
    std::size_t bytes = 0;
    for (const auto& layer : layers_) bytes += layer.referenced_parameter_bytes();
    return bytes;
  }

  // Bytes of the reuse state (part of workspace_bytes): reuse_plan().slots()
  // heads of probabilities, the most ever live at once, each [N_b, N_b] per
  // sequence: slots · B · N² values for a dense batch, slots · sum of N_b² for
  // the packed batch of `offsets` (validated as forward's).
  [[nodiscard]] std::size_t reuse_state_bytes(index_t batch, index_t seq) const {
    return reuse_state_bytes(batch_shape::dense(batch, seq));
  }
  [[nodiscard]] std::size_t reuse_state_bytes(std::span<const index_t> offsets) const {
    return reuse_state_bytes(detail::packed_shape(offsets));
  }
  [[nodiscard]] std::size_t reuse_state_bytes(const batch_shape& shape) const {
    return static_cast<std::size_t>(reuse_.slots() * shape.squares) * sizeof(T);
  }

  // Planning and execution: for forward_interface.
 private:
  friend class detail::forward_interface<encoder, T>;
  friend struct detail::module_access;
  using access = detail::module_access;

  struct buffers {
    T* reuse_state;  // per sequence b: [slots, N_b, N_b]
    arena layers;    // where each layer's temporaries start (layers run one at a time)
    int threads;     // each layer's plan is for
  };

  [[nodiscard]] buffers plan(arena& a, const batch_shape& shape, int threads) const {
    buffers b{a.take<T>(reuse_.slots() * shape.squares), a, threads};
    access::plan_largest(layers_, a, shape, threads);
    return b;
  }

  template <std::size_t Rank>
  void run(const T*, T* stream, const sequences& batch, const T* additive_mask, const buffers& b,
           const attention_io<T, Rank>& io) const {
    arena a = b.layers;
    const attention::probability_store<T> pool{b.reuse_state, reuse_.slots()};
    for (std::size_t l = 0; l < layers_.size(); ++l) {
      const attention::probability_store<T> attentions =
          io.attentions.empty() ? attention::probability_store<T>{} : detail::caller_store(io.attentions[l], heads());
      const attention::head_io<T> routing =
          attention::encoder_layer_heads(reuse_, pool, static_cast<index_t>(l), attentions);
      const std::size_t start = a.mark();
      const auto layer_buffers = access::plan(layers_[l], a, batch.shape(), b.threads);
      access::execute(layers_[l], stream, batch, additive_mask, layer_buffers, routing);
      a.release(start);
    }
  }

  encoder_config config_;
  attention::reuse_state_plan reuse_;
  std::vector<encoder_layer<T, Score, Arch, Products>> layers_;
};

}  // namespace reuseformer
