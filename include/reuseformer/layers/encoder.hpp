#pragma once
// A stack of L encoder layers applied in order to a [B, N, d] batch.
//
//   reuseformer::encoder<float> model(config, layer_weights);
//   auto ws = model.make_workspace(batch, seq, threads);    // once
//   model.forward(input, output, ws, attention_mask);      // many times, no allocation

#include <cstddef>
#include <string>
#include <vector>

#include "reuseformer/core/error.hpp"
#include "reuseformer/core/workspace.hpp"
#include "reuseformer/layers/config.hpp"
#include "reuseformer/layers/encoder_layer.hpp"
#include "reuseformer/layers/stream_module.hpp"

namespace reuseformer {

template <class T, class Arch = simd::default_arch>
class encoder : public detail::stream_module<encoder<T, Arch>, T> {
 public:
  static constexpr bool residual = true;

  // The layers view the tensors in `layers`; the caller keeps them alive.
  // Throws reuseformer::error on an invalid config, a layer count other than
  // config.num_hidden_layers, or a wrongly shaped tensor (named as
  // "encoder.layer.{i}.attention.self.query.weight" and so on).
  encoder(const encoder_config& config, const std::vector<encoder_layer_weights<T>>& layers)
      : config_((config.validate(), config)) {
    detail::require(static_cast<index_t>(layers.size()) == config.num_hidden_layers,
                    "num_hidden_layers: expected ", config.num_hidden_layers,
                    " layers of weights, found ", layers.size());
    layers_.reserve(layers.size());
    for (std::size_t i = 0; i < layers.size(); ++i)
      layers_.emplace_back(config, layers[i], "encoder.layer." + std::to_string(i) + ".");
  }

  [[nodiscard]] const encoder_config& config() const { return config_; }
  [[nodiscard]] index_t hidden_size() const { return config_.hidden_size; }
  [[nodiscard]] std::size_t parameter_bytes() const {
    std::size_t bytes = 0;
    for (const auto& layer : layers_) bytes += layer.parameter_bytes();
    return bytes;
  }

  using layer_buffers = typename encoder_layer<T, Arch>::buffers;
  struct buffers {
    layer_buffers layer;  // layers run one after another and share the same temporaries
  };

  [[nodiscard]] buffers plan(arena& a, index_t batch, index_t seq, int threads) const {
    // Every layer has the same shapes, so the first one's plan serves them all.
    if (layers_.empty()) return {};
    return {layers_.front().plan(a, batch, seq, threads)};
  }

  void run(const T*, T* stream, index_t batch, index_t seq, const T* additive_mask,
           const buffers& b, int threads) const {
    for (const auto& layer : layers_) layer.run(stream, stream, batch, seq, additive_mask, b.layer, threads);
  }

 private:
  encoder_config config_;
  std::vector<encoder_layer<T, Arch>> layers_;
};

}  // namespace reuseformer
