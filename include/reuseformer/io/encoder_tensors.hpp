#pragma once
// An encoder's parameters as safetensors entries under their Hugging Face
// names: "encoder.layer.{l}." followed by the names layers/layer_tensors.hpp
// lists for layer l, in its order. These are the tensors io::bert_model binds,
// so a file written from them loads back.
//
//   io::write_safetensors(dir / "model.safetensors", io::encoder_tensors(config, parameters.layers()));
//
// The entries view the caller's values: keep them alive until written.

#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "reuseformer/core/error.hpp"
#include "reuseformer/core/tensor_view.hpp"
#include "reuseformer/io/safetensors_writer.hpp"
#include "reuseformer/layers/config.hpp"
#include "reuseformer/layers/encoder_layer.hpp"
#include "reuseformer/layers/layer_tensors.hpp"

namespace reuseformer::io {

// Entries for every tensor each layer has, checked against its shape. Throws
// reuseformer::error for an invalid config, a layer count other than
// num_hidden_layers, or a view of the wrong shape (naming the tensor).
template <class T>
[[nodiscard]] std::vector<tensor_entry> encoder_tensors(const encoder_config& config,
                                                        const std::vector<encoder_layer_weights<T>>& layers) {
  config.validate();
  detail::require(static_cast<index_t>(layers.size()) == config.num_hidden_layers, "num_hidden_layers: expected ",
                  config.num_hidden_layers, " layers of weights, found ", layers.size());
  std::vector<tensor_entry> entries;
  for (index_t l = 0; l < config.num_hidden_layers; ++l) {
    const layer_dims dims = layer_dims::of(config, l);
    const std::string prefix = layer_tensor_prefix(l);
    for_each_layer_tensor([&](const auto& row) {
      if (!row.present(dims)) return;
      const std::string name = prefix + std::string(row.name);
      const auto& view = row.field(layers[static_cast<std::size_t>(l)]);
      const auto shape = row.shape(dims);
      detail::require_shape(view, shape, name);
      entries.push_back(make_entry(name, std::span(view.data(), static_cast<std::size_t>(view.size())),
                                   std::vector<index_t>(shape.begin(), shape.end())));
    });
  }
  return entries;
}

}  // namespace reuseformer::io
