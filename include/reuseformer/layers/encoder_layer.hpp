#pragma once
// One transformer encoder layer: attention and feed-forward blocks, each wrapped
// in a residual connection and a LayerNorm (docs/semantics.md §Encoder layers):
//   post-LN (BERT):      x = LN_1(x + Attn(x));   x = LN_2(x + FFN(x))
//   pre-LN (norm_first): x = x + Attn(LN_1(x));   x = x + FFN(LN_2(x))

#include <algorithm>
#include <cstddef>
#include <string>
#include <string_view>

#include "reuseformer/core/workspace.hpp"
#include "reuseformer/layers/config.hpp"
#include "reuseformer/layers/feed_forward.hpp"
#include "reuseformer/layers/layer_norm.hpp"
#include "reuseformer/layers/multi_head_attention.hpp"
#include "reuseformer/layers/forward_interface.hpp"

namespace reuseformer {

// Views of one layer's parameters, in Hugging Face BERT's structure. W: the
// element type of the Linears' weights (linear_weights: T, or bfloat16 for
// bf16_products); every other tensor holds T.
template <class T, class W = T>
struct encoder_layer_weights {
  attention_weights<T, W> attention;        // attention.self.*, attention.output.dense
  layer_norm_weights<T> attention_norm;     // attention.output.LayerNorm (LN_1)
  feed_forward_weights<T, W> feed_forward;  // intermediate.dense, output.dense
  layer_norm_weights<T> output_norm;        // output.LayerNorm (LN_2)
};

// Products: the product backend of its Linears (layers/product_backend.hpp).
template <class T, score_function Score = score_function::standard, class Arch = simd::default_arch,
          class Products = packed_products>
class encoder_layer : public detail::forward_interface<encoder_layer<T, Score, Arch, Products>, T> {
 public:
  static constexpr bool residual = true;

  // Layer `index` of an encoder configured by `config` (its reuse count is
  // config.reused_heads(index)). Throws reuseformer::error on an invalid config,
  // a config whose score function is not Score, or a tensor that does not fit
  // (see multi_head_attention); `prefix` (e.g. "encoder.layer.3.") names the
  // tensors in messages.
  template <class W = T>
    requires packs_weights_of<Products, T, Arch, W>
  encoder_layer(const encoder_config& config, const encoder_layer_weights<T, W>& w, index_t index = 0,
                std::string_view prefix = "")
      : norm_((detail::validate_for(config, Score),
               detail::require(index >= 0 && index < std::max<index_t>(config.num_hidden_layers, 1),
                               "layer index: expected a value in [0, ", config.num_hidden_layers, "), found ", index),
               config.norm)),
        attention_(w.attention, attention_options_for(config, index), std::string(prefix) + "attention."),
        attention_norm_(w.attention_norm, config.hidden_size, config.layer_norm_eps,
                        std::string(prefix) + "attention.output.LayerNorm"),
        feed_forward_(w.feed_forward, config.hidden_size, config.intermediate_size, config.hidden_act, prefix),
        output_norm_(w.output_norm, config.hidden_size, config.layer_norm_eps,
                     std::string(prefix) + "output.LayerNorm") {}

  // The attention options of layer `index` of an encoder.
  [[nodiscard]] static attention_options attention_options_for(const encoder_config& c, index_t index) {
    return {c.hidden_size, c.num_attention_heads, c.causal, c.reused_heads(index),
            c.use_relative_pe ? c.pe_max_seq_length : 0};
  }

  [[nodiscard]] index_t hidden_size() const { return attention_.hidden_size(); }
  [[nodiscard]] index_t heads() const { return attention_.heads(); }
  [[nodiscard]] index_t attention_layers() const { return 1; }
  [[nodiscard]] index_t first_reused_heads() const { return attention_.reused_heads(); }
  [[nodiscard]] const multi_head_attention<T, Score, Arch, Products>& attention() const { return attention_; }
  [[nodiscard]] std::size_t parameter_bytes() const {
    return attention_.parameter_bytes() + attention_norm_.parameter_bytes() + feed_forward_.parameter_bytes() +
           output_norm_.parameter_bytes();
  }
  // Bytes of the caller's tensors still read after construction (LayerNorm
  // parameters, relative-position table, pairwise factors): the projection
  // weights and biases are packed copies the layer owns.
  [[nodiscard]] std::size_t referenced_parameter_bytes() const {
    return attention_.referenced_parameter_bytes() + attention_norm_.referenced_parameter_bytes() +
           output_norm_.referenced_parameter_bytes();
  }

  // Planning and execution: for forward_interface and the encoder.
 private:
  friend class detail::forward_interface<encoder_layer, T>;
  friend struct detail::module_access;
  using access = detail::module_access;

  struct buffers {
    T* normed;  // [T, d], pre-LN only
    access::buffers<multi_head_attention<T, Score, Arch, Products>> attention;
    access::buffers<reuseformer::feed_forward<T, Arch, Products>> feed_forward;
    int threads;  // of the LayerNorms
  };

  // The attention and feed-forward temporaries are never live together: they
  // share the same bytes.
  [[nodiscard]] buffers plan(arena& a, const batch_shape& shape, int threads) const {
    const index_t rows = shape.tokens;
    buffers b{norm_ == norm_placement::pre ? a.take<T>(rows * hidden_size()) : nullptr, {}, {}, threads};
    const std::size_t start = a.mark();
    b.attention = access::plan(attention_, a, shape, threads);
    a.release(start);
    b.feed_forward = access::plan(feed_forward_, a, rows, threads);
    a.release(start);
    return b;
  }

  // A standalone call: io.reused holds the heads to reuse.
  template <std::size_t Rank>
  void run(const T*, T* stream, const sequences& batch, const T* additive_mask, const buffers& b,
           const attention_io<T, Rank>& io) const {
    execute(stream, batch, additive_mask, b, detail::standalone_heads(io, heads(), attention_.reused_heads()));
  }

  // Updates the residual stream [T, d] in place; `routing` as for the attention.
  void execute(T* stream, const sequences& batch, const T* additive_mask, const buffers& b,
               const attention::head_io<T>& routing) const {
    execute(stream, batch.tokens(), b, [&](const T* x, T* out, auto after) {
      access::execute(attention_, x, out, batch, additive_mask, b.attention, routing, after);
    });
  }

  // The layer around an attention computed by attend(x, stream, after), which
  // adds the attention of x [rows, d] to stream and then runs after(row, rows)
  // on rows of stream as they become final: the attention above, or one
  // decoding step (layers/decoder.hpp). Each LayerNorm that follows a residual
  // add runs on rows as the product that completes them finishes them.
  template <class Attend>
  void execute(T* stream, index_t rows, const buffers& b, Attend&& attend) const {
    const auto normalize = [](const layer_norm<T, Arch>& norm, const T* from, T* to) {
      return [&norm, from, to](index_t row, index_t count) { norm.forward_rows(from, to, row, count); };
    };
    if (norm_ == norm_placement::post) {
      attend(stream, stream, normalize(attention_norm_, stream, stream));
      access::run(feed_forward_, stream, stream, rows, b.feed_forward, normalize(output_norm_, stream, stream));
    } else {
      attention_norm_.forward(stream, b.normed, rows, b.threads);
      attend(b.normed, stream, normalize(output_norm_, stream, b.normed));
      access::run(feed_forward_, b.normed, stream, rows, b.feed_forward);
    }
  }

  norm_placement norm_;
  multi_head_attention<T, Score, Arch, Products> attention_;
  layer_norm<T, Arch> attention_norm_;
  feed_forward<T, Arch, Products> feed_forward_;
  layer_norm<T, Arch> output_norm_;
};

}  // namespace reuseformer
