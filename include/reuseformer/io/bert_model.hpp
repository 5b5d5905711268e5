#pragma once
// A Hugging Face BERT-style checkpoint, loaded: config.json plus
// model.safetensors bound by tensor name (docs/checkpoints.md §Tensor names)
// to an encoder and, when the file has them, the embeddings.
//
//   const io::model<float> model = io::load_model<float>(dir);   // any score function
//   auto ws = model.make_workspace(batch, seq, threads);
//   model.forward(hidden_states, output, ws, attention_mask);
//
// io::model<T> chooses the score function at run time, from config.json
// (any_encoder); io::bert_model<T, Score> is the same loader for a score
// function known when compiling (encoder<T, Score>), and refuses a config.json
// that names another.
//
// Binding rules: names may carry a leading "bert." (task checkpoints do; the
// whole file must agree). Layer l has exactly the tensors
// layers/layer_tensors.hpp lists for its score function, reuse count and
// relative-position option (e.g. no attention.self.key for symmetric scores,
// no query or key when K_l = H). The embeddings block is optional, but
// all or nothing. Other tensors (pooler, task heads) are ignored; a tensor the
// configuration rules out, or a layer index past num_hidden_layers, is an error.
// Tensors stored as aligned T are used in place (zero-copy, from the mapped
// file); others (F16, BF16, the other float type) are converted once, here.
// Except the Linears' weights of a backend that stores bfloat16
// (bf16_products) when the file stores every one of them as BF16: those are
// bound as bfloat16 (linear_weights<T, bfloat16>), in place, and packed with
// their stored values, never widened; otherwise bf16_products rounds them
// once, to nearest even, as it packs them.
// A Linear's weight may be stored as int8: X.weight I8 [out, in] with
// X.weight_scale F32 [out], w ≈ q · scale per output row (docs/checkpoints.md).
// A backend that stores int8 (int8_products) packs them as they are when every
// Linear weight is I8; otherwise each I8 weight is dequantized once, here, to
// T (q · scale rounded to T), and packed as any T weight. A weight_scale
// beside anything but an I8 weight is an error, never ignored.
// The encoder is built one layer at a time: a layer's Linear weights and
// biases (converted copies, or the file's pages) are let go of once that
// layer has packed them (its product backend packs its own copies), so the
// load holds one layer's converted copies at a time; the model keeps the
// converted tensors its layers go on reading (converted_parameter_bytes()).
// Every error throws reuseformer::error starting with the safetensors file's
// path and naming the tensor, with the expected and the found shape or reason.

#include <charconv>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "reuseformer/attention/score_function.hpp"
#include "reuseformer/core/bfloat16.hpp"
#include "reuseformer/core/error.hpp"
#include "reuseformer/io/config_json.hpp"
#include "reuseformer/io/safetensors_reader.hpp"
#include "reuseformer/layers/any_encoder.hpp"
#include "reuseformer/layers/embeddings.hpp"
#include "reuseformer/layers/encoder.hpp"
#include "reuseformer/layers/layer_tensors.hpp"
#include "reuseformer/layers/product_backend.hpp"
#include "reuseformer/simd/arch.hpp"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace reuseformer::io {

// The prefix of the checkpoint's encoder and embeddings tensors: "bert." when
// they carry it (task checkpoints do), else "".
[[nodiscard]] inline std::string checkpoint_root(const safetensors_reader& file) {
  for (const std::string& name : file.names())
    if (name.starts_with("bert.encoder.") || name.starts_with("bert.embeddings.")) return "bert.";
  return "";
}

// A checkpoint bound to an Encoder (encoder<T, Score, Arch, Products> or
// any_encoder<T, Arch, Products>) and, when the file has them, Embeddings. Use
// the aliases below.
template <class Encoder, class Embeddings>
class basic_bert_model {
 public:
  using value_type = typename Encoder::value_type;

  // Reads dir/config.json, then maps dir/model.safetensors.
  explicit basic_bert_model(const std::filesystem::path& dir)
      : basic_bert_model(read_config_json((dir / "config.json").string()), dir) {}

  // Binds `file` to `c` (which Encoder must accept: a compile-time encoder
  // requires its own score function).
  basic_bert_model(const model_config& c, safetensors_reader file)
      : config_(c), file_(std::move(file)), root_(checkpoint_root(file_)) {
    try {
      Encoder::validate(config_.encoder);
      check_no_stray_layers();
      check_scales_have_int8_weights();
      if (takes_weights_of<bfloat16> && linear_weights_stored_as(dtype::BF16))
        bind_encoder_if<bfloat16>();
      else if (takes_weights_of<std::int8_t> && linear_weights_stored_as(dtype::I8))
        bind_encoder_if<std::int8_t>();
      else
        bind_encoder<T>();
#if defined(__GLIBC__)
      // The last layer's converted copies were freed below that layer's packed
      // weights, a hole the heap keeps resident (a BERT-base layer's, ~30 MB);
      // glibc gives such pages back only when asked.
      ::malloc_trim(0);
#endif
      if (file_.contains(root_ + "embeddings.word_embeddings.weight")) {
        const std::string p = root_ + "embeddings.";
        embeddings_.emplace(
            embeddings_weights<value_type>{matrix(p + "word_embeddings.weight"),
                                           matrix(p + "position_embeddings.weight"),
                                           matrix(p + "token_type_embeddings.weight"),
                                           {vector(p + "LayerNorm.weight"), vector(p + "LayerNorm.bias")}},
            config_.embeddings, p);
      }
      // The encoder has packed copies of its projection weights: the pages it
      // read them from leave the process's memory (the rest is read back
      // from the file when used: LayerNorm parameters, embedding rows).
      file_.release_pages();
    } catch (const error& e) {
      const std::string what = e.what();
      if (what.rfind(file_.source() + ": ", 0) == 0) throw;  // already names the file
      throw error(detail::concat(file_.source(), ": ", what));
    }
  }

  // Views point into the mapping and into tensors_, whose elements never move.
  basic_bert_model(basic_bert_model&&) noexcept = default;
  basic_bert_model(const basic_bert_model&) = delete;
  basic_bert_model& operator=(const basic_bert_model&) = delete;
  basic_bert_model& operator=(basic_bert_model&&) = delete;
  ~basic_bert_model() = default;

  [[nodiscard]] const model_config& config() const { return config_; }
  [[nodiscard]] const Encoder& encoder() const { return *encoder_; }
  // The embeddings, when the checkpoint has them (then input_ids can be encoded).
  [[nodiscard]] const std::optional<Embeddings>& embeddings() const { return embeddings_; }
  // Bytes of the parameters the model uses (encoder plus embeddings).
  [[nodiscard]] std::size_t parameter_bytes() const {
    return encoder_->parameter_bytes() + (embeddings_ ? embeddings_->parameter_bytes() : 0);
  }
  // The part of parameter_bytes() still read from the file's mapping rather
  // than held as packed copies: the encoder's referenced tensors and the
  // embedding tables.
  [[nodiscard]] std::size_t referenced_parameter_bytes() const {
    return encoder_->referenced_parameter_bytes() + (embeddings_ ? embeddings_->parameter_bytes() : 0);
  }
  // The part of referenced_parameter_bytes() held as copies converted from
  // the file's dtype (0 when every referenced tensor is stored as aligned T):
  // with the mapping's pages, the parameter memory the model holds besides
  // the encoder's packed weights.
  [[nodiscard]] std::size_t converted_parameter_bytes() const {
    std::size_t bytes = 0;
    for (const loaded_tensor<T>& t : tensors_)
      if (!t.borrows()) bytes += static_cast<std::size_t>(t.size()) * sizeof(T);
    return bytes;
  }
  // The encoder's workspace and reuse state (see encoder); the embeddings need none.
  [[nodiscard]] std::size_t workspace_bytes(index_t batch, index_t seq, int threads = 1) const {
    return encoder_->workspace_bytes(batch, seq, threads);
  }
  [[nodiscard]] workspace make_workspace(index_t batch, index_t seq, int threads = 1) const {
    return encoder_->make_workspace(batch, seq, threads);
  }
  [[nodiscard]] std::size_t reuse_state_bytes(index_t batch, index_t seq) const {
    return encoder_->reuse_state_bytes(batch, seq);
  }
  // The encoder on hidden states [B, N, d] (as encoder::forward). Checkpoints
  // with embeddings can start from token ids: embeddings()->forward first.
  void forward(tensor_view<const value_type, 3> input, tensor_view<value_type, 3> output, workspace& ws,
               const attention_mask& mask = {}, const attention_io<value_type>& io = {}) const {
    encoder_->forward(input, output, ws, mask, io);
  }
  // The same, computing or skipping padding (reuseformer::padding).
  void forward(tensor_view<const value_type, 3> input, tensor_view<value_type, 3> output, workspace& ws,
               const attention_mask& mask, padding mode) const {
    encoder_->forward(input, output, ws, mask, mode);
  }
  // The encoder on a packed batch, tokens [T, d] with sequence offsets (as encoder::forward).
  void forward(tensor_view<const value_type, 2> tokens, tensor_view<value_type, 2> output,
               std::span<const index_t> offsets, workspace& ws, const packed_attention_io<value_type>& io = {}) const {
    encoder_->forward(tokens, output, offsets, ws, io);
  }
  // "bert." or "": the prefix the file's tensor names carry.
  [[nodiscard]] const std::string& root() const { return root_; }

 private:
  // The file is opened once the configuration has been read (in this order,
  // which a single constructor's unordered arguments would not guarantee).
  basic_bert_model(const model_config& c, const std::filesystem::path& dir)
      : basic_bert_model(c, safetensors_reader(dir / "model.safetensors")) {}

  void check_no_stray_layers() const {
    const std::string layers = root_ + "encoder.layer.";
    for (const std::string& name : file_.names()) {
      if (!name.starts_with(layers)) continue;
      const std::string_view rest = std::string_view(name).substr(layers.size());
      const std::size_t dot = rest.find('.');
      index_t index = -1;
      if (dot != std::string_view::npos && dot > 0 &&
          rest.substr(0, dot).find_first_not_of("0123456789") == std::string_view::npos)
        // from_chars, not std::stoll: an index past 2^63 (as in
        // "encoder.layer.99999999999999999999.x") threw std::out_of_range, which
        // is not a reuseformer::error (found with the fuzz/fuzz_bert_model
        // target). On overflow `index` stays -1: the tensor is reported as unexpected.
        static_cast<void>(std::from_chars(rest.data(), rest.data() + dot, index));
      detail::require(index >= 0 && index < config_.encoder.num_hidden_layers, "tensor '", name,
                      "': unexpected (num_hidden_layers is ", config_.encoder.num_hidden_layers, ")");
    }
  }

  // A tensor the configuration rules out must not be there: it would mean the
  // weights were trained for another configuration.
  void require_absent(const std::string& name, std::string_view why) const {
    detail::require(!file_.contains(name), "tensor '", name, "': unexpected (", why, ")");
  }

  using T = value_type;

  // Whether the encoder's Linears take W weights (bf16_products: bfloat16,
  // int8_products: std::int8_t).
  template <class W>
  static constexpr bool takes_weights_of =
      std::constructible_from<Encoder, const encoder_config&, encoder_layer_weights<T, W> (*)(index_t),
                              std::string_view>;

  // A weight_scale only means something beside an I8 weight; anywhere else
  // it would be ignored, and the checkpoint read as something it is not.
  void check_scales_have_int8_weights() const {
    constexpr std::string_view suffix = "_scale";
    for (const std::string& name : file_.names()) {
      if (!name.ends_with(".weight_scale")) continue;
      const std::string weight = name.substr(0, name.size() - suffix.size());
      detail::require(file_.contains(weight), "tensor '", name, "': unexpected (no tensor '", weight,
                      "' for it to scale)");
      const dtype type = file_.find(weight).type;
      detail::require(type == dtype::I8, "tensor '", name, "': unexpected (it scales an I8 weight; '", weight, "' is ",
                      io::name(type), ")");
    }
  }

  // The element type of a table row's view in encoder_layer_weights<T, W>:
  // W for a Linear's weight, T for every other tensor.
  template <class Row, class W>
  using element_of = std::remove_const_t<typename std::remove_cvref_t<decltype(std::declval<const Row&>().field(
      std::declval<encoder_layer_weights<T, W>&>()))>::element_type>;

  // Whether a row of the table is a Linear's weight: the tensors whose
  // element type the backend chooses.
  template <class Row>
  static constexpr bool is_linear_weight = std::is_same_v<element_of<Row, std::int8_t>, std::int8_t>;

  // Whether the file stores every Linear weight of the encoder as `type`:
  // then a backend that stores such values packs them from the file's values.
  [[nodiscard]] bool linear_weights_stored_as(dtype type) const {
    bool all = true;
    for (index_t l = 0; l < config_.encoder.num_hidden_layers; ++l) {
      const layer_dims dims = layer_dims::of(config_.encoder, l);
      const std::string prefix = root_ + layer_tensor_prefix(l);
      for_each_layer_tensor([&]<class Row>(const Row& row) {
        const std::string name = prefix + std::string(row.name);
        if constexpr (is_linear_weight<Row>)
          if (row.present(dims) && file_.contains(name)) all = all && file_.find(name).type == type;
      });
    }
    return all;
  }

  // The tensors a layer copies (tensor_use::copied), kept until it is built.
  struct layer_copies {
    std::deque<loaded_tensor<T>> values;
    std::deque<loaded_tensor<bfloat16>> bf16_weights;
    std::deque<loaded_tensor<std::int8_t>> int8_weights;
    std::deque<loaded_tensor<float>> int8_scales;
    std::deque<std::vector<T>> dequantized;
  };

  // bind_encoder<W>, compiled only for an encoder that takes W weights (the
  // choice between them is made at run time, from the file's dtypes).
  template <class W>
  void bind_encoder_if() {
    if constexpr (takes_weights_of<W>) bind_encoder<W>();
  }

  // The encoder, its Linears' weights bound as W, layer by layer: the tensors
  // a layer copies (converted, or read in place) are let go of once it is
  // built, before the next layer's are read.
  template <class W>
  void bind_encoder() {
    layer_copies copied;
    encoder_.emplace(
        config_.encoder,
        [&](index_t l) {
          copied = {};
          file_.release_pages();
          return bind_layer<W>(l, copied);
        },
        root_);
  }

  template <class E>
  const loaded_tensor<E>& load(const std::string& name, std::deque<loaded_tensor<E>>& into) {
    detail::require(file_.contains(name), "tensor '", name, "': missing");
    return into.emplace_back(file_.template load<E>(name));
  }
  matrix_view<const T> matrix(const std::string& name) { return load(name, tensors_).template view<2>(); }
  vector_view<const T> vector(const std::string& name) { return load(name, tensors_).template view<1>(); }

  // The scales of the I8 weight `weight`, X.weight_scale, as stored (dtype F32;
  // their shape and values are checked with the weight's).
  vector_view<const float> int8_scales(const std::string& weight, std::deque<loaded_tensor<float>>& into) {
    const std::string name = weight + "_scale";
    detail::require(file_.contains(name), "tensor '", name, "': missing ('", weight,
                    "' is I8, which needs its scale per output row, F32 [out])");
    const dtype type = file_.find(name).type;
    detail::require(type == dtype::F32, "tensor '", name, "': expected dtype F32, found ", io::name(type));
    return load(name, into).template view<1>();
  }

  // The I8 weight `name` as T: q · scale per row, rounded to T once.
  matrix_view<const T> dequantized(const std::string& name, layer_copies& copied) {
    const matrix_view<const std::int8_t> q = load(name, copied.int8_weights).template view<2>();
    const vector_view<const float> scale = int8_scales(name, copied.int8_scales);
    detail::require_int8_scales(scale, q.extent(0), name + "_scale");
    std::vector<T>& w = copied.dequantized.emplace_back(static_cast<std::size_t>(q.size()));
    for (index_t r = 0; r < q.extent(0); ++r)
      for (index_t p = 0; p < q.extent(1); ++p)
        w[static_cast<std::size_t>(r * q.extent(1) + p)] = static_cast<T>(q(r, p)) * static_cast<T>(scale(r));
    return {w.data(), q.shape()};
  }

  // Layer l's tensors as the table lists them: each one it has is loaded
  // (shapes are checked when the layer is built; those the layer copies into
  // `copied`, the others kept), each one it has not must be absent from the file.
  template <class W>
  encoder_layer_weights<T, W> bind_layer(index_t l, layer_copies& copied) {
    const layer_dims dims = layer_dims::of(config_.encoder, l);
    const std::string prefix = root_ + layer_tensor_prefix(l);
    encoder_layer_weights<T, W> w;
    for_each_layer_tensor([&]<class Row>(const Row& row) {
      const std::string name = prefix + std::string(row.name);
      auto& view = row.field(w);
      constexpr std::size_t rank = std::remove_cvref_t<decltype(view)>::rank;
      if (!row.present(dims))
        require_absent(name, row.absence_reason(dims));
      else if constexpr (std::is_same_v<element_of<Row, W>, bfloat16>)
        view = load(name, copied.bf16_weights).template view<rank>();  // a Linear's weight: packed
      else if constexpr (std::is_same_v<element_of<Row, W>, std::int8_t>) {
        static_cast<matrix_view<const std::int8_t>&>(view) = load(name, copied.int8_weights).template view<rank>();
        view.scale = int8_scales(name, copied.int8_scales);
      } else if constexpr (is_linear_weight<Row>) {
        if (file_.contains(name) && file_.find(name).type == dtype::I8)
          view = dequantized(name, copied);  // a Linear's int8 weight, for a backend of T weights
        else
          view = load(name, copied.values).template view<rank>();
      } else
        view = load(name, row.use == tensor_use::copied ? copied.values : tensors_).template view<rank>();
    });
    return w;
  }

  model_config config_;
  safetensors_reader file_;
  std::string root_;
  // The tensors the model reads after construction; a deque: views into its
  // elements stay valid as it grows.
  std::deque<loaded_tensor<T>> tensors_;
  std::optional<Encoder> encoder_;
  std::optional<Embeddings> embeddings_;
};

// A checkpoint whose config.json must name Score. Products: the encoder's
// product backend (layers/product_backend.hpp).
template <class T, score_function Score = score_function::standard, class Arch = simd::default_arch,
          class Products = packed_products>
using bert_model = basic_bert_model<encoder<T, Score, Arch, Products>, embeddings<T, Arch>>;

// A checkpoint of any score function: the one config.json names.
template <class T, class Arch = simd::default_arch, class Products = packed_products>
using model = basic_bert_model<any_encoder<T, Arch, Products>, embeddings<T, Arch>>;

// Reads dir/config.json and binds dir/model.safetensors to it. Throws
// reuseformer::error naming the file, key or tensor (see above).
template <class T, class Arch = simd::default_arch, class Products = packed_products>
[[nodiscard]] model<T, Arch, Products> load_model(const std::filesystem::path& dir) {
  return model<T, Arch, Products>(dir);
}

}  // namespace reuseformer::io
