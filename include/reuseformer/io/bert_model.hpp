#pragma once
// A Hugging Face BERT-style checkpoint, loaded: config.json plus
// model.safetensors bound by tensor name (docs/checkpoints.md §Tensor names)
// to an encoder and, when the file has them, the embeddings.
//
//   const io::model_config config = io::read_config_json(dir / "config.json");
//   visit(config.encoder.score, [&]<score_function Score>() {
//     io::bert_model<float, Score> model(config, io::safetensors_reader(dir / "model.safetensors"));
//     model.encoder().forward(...);
//   });
//
// Binding rules: names may carry a leading "bert." (task checkpoints do; the
// whole file must agree). Layer l needs attention.self.query for its H - K_l
// fresh heads, attention.self.key only for standard scores,
// attention.self.pairwise_factors only for pairwise ones,
// attention.self.relative_position_embeddings only with use_relative_pe (none
// of them when K_l = H), and always value, output.dense, both LayerNorms,
// intermediate.dense and output.dense. The embeddings block is optional, but
// all or nothing. Other tensors (pooler, task heads) are ignored; a tensor the
// configuration rules out, or a layer index past num_hidden_layers, is an error.
// Tensors stored as aligned T are used in place (zero-copy, from the mapped
// file); others (F16, BF16, the other float type) are converted once, here.
// Every error throws reuseformer::error starting with the safetensors file's
// path and naming the tensor, with the expected and the found shape or reason.

#include <charconv>
#include <cstddef>
#include <deque>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "reuseformer/attention/score_function.hpp"
#include "reuseformer/core/error.hpp"
#include "reuseformer/io/config_json.hpp"
#include "reuseformer/io/safetensors_reader.hpp"
#include "reuseformer/layers/embeddings.hpp"
#include "reuseformer/layers/encoder.hpp"
#include "reuseformer/simd/arch.hpp"

namespace reuseformer::io {

template <class T, score_function Score = score_function::standard, class Arch = simd::default_arch>
class bert_model {
 public:
  // Reads dir/config.json and maps dir/model.safetensors.
  explicit bert_model(const std::filesystem::path& dir)
      : bert_model(read_config_json((dir / "config.json").string()), safetensors_reader(dir / "model.safetensors")) {}

  // Binds `file` to `config` (whose score function must be Score).
  bert_model(const model_config& config, safetensors_reader file)
      : config_(config), file_(std::move(file)), root_(root_of(file_)) {
    try {
      reuseformer::detail::validate_for(config_.encoder, Score);
      check_no_stray_layers();
      std::vector<encoder_layer_weights<T>> layers;
      for (index_t l = 0; l < config_.encoder.num_hidden_layers; ++l) layers.push_back(bind_layer(l));
      encoder_.emplace(config_.encoder, layers, root_);
      if (file_.contains(root_ + "embeddings.word_embeddings.weight")) {
        const std::string p = root_ + "embeddings.";
        embeddings_.emplace(embeddings_weights<T>{matrix(p + "word_embeddings.weight"),
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
  bert_model(bert_model&&) noexcept = default;
  bert_model(const bert_model&) = delete;
  bert_model& operator=(const bert_model&) = delete;
  bert_model& operator=(bert_model&&) = delete;
  ~bert_model() = default;

  [[nodiscard]] const model_config& config() const { return config_; }
  [[nodiscard]] const reuseformer::encoder<T, Score, Arch>& encoder() const { return *encoder_; }
  // The embeddings, when the checkpoint has them (then input_ids can be encoded).
  [[nodiscard]] const std::optional<reuseformer::embeddings<T, Arch>>& embeddings() const { return embeddings_; }
  // Bytes of the parameters the model uses (encoder plus embeddings).
  [[nodiscard]] std::size_t parameter_bytes() const {
    return encoder_->parameter_bytes() + (embeddings_ ? embeddings_->parameter_bytes() : 0);
  }
  // "bert." or "": the prefix the file's tensor names carry.
  [[nodiscard]] const std::string& root() const { return root_; }

 private:
  static std::string root_of(const safetensors_reader& file) {
    for (const std::string& name : file.names())
      if (name.starts_with("bert.encoder.") || name.starts_with("bert.embeddings.")) return "bert.";
    return "";
  }

  void check_no_stray_layers() const {
    const std::string layers = root_ + "encoder.layer.";
    for (const std::string& name : file_.names()) {
      if (!name.starts_with(layers)) continue;
      const std::string_view rest = std::string_view(name).substr(layers.size());
      const std::size_t dot = rest.find('.');
      index_t index = -1;
      if (dot != std::string_view::npos && dot > 0 && rest.substr(0, dot).find_first_not_of("0123456789") == std::string_view::npos)
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

  const loaded_tensor<T>& load(const std::string& name) {
    detail::require(file_.contains(name), "tensor '", name, "': missing");
    return tensors_.emplace_back(file_.load<T>(name));
  }
  matrix_view<const T> matrix(const std::string& name) { return load(name).template view<2>(); }
  vector_view<const T> vector(const std::string& name) { return load(name).template view<1>(); }
  linear_weights<T> linear(const std::string& name) { return {matrix(name + ".weight"), vector(name + ".bias")}; }

  encoder_layer_weights<T> bind_layer(index_t l) {
    const encoder_config& c = config_.encoder;
    const std::string p = detail::concat(root_, "encoder.layer.", l, "."), self = p + "attention.self.";
    const bool fresh = c.fresh_heads(l) > 0;
    const std::string all_reused = detail::concat("layer ", l, " reuses all ", c.num_attention_heads, " heads");
    const std::string score = detail::concat(name_of(Score), " scores");

    encoder_layer_weights<T> w;
    if (fresh) {
      w.attention.query = linear(self + "query");
    } else {
      require_absent(self + "query.weight", all_reused);
      require_absent(self + "query.bias", all_reused);
    }
    if (fresh && has_key_projection(Score)) {
      w.attention.key = linear(self + "key");
    } else {
      const std::string why = fresh ? score + " have no key projection" : all_reused;
      require_absent(self + "key.weight", why);
      require_absent(self + "key.bias", why);
    }
    if (fresh && has_pairwise_factors(Score))
      w.attention.pairwise_factors = load(self + "pairwise_factors").template view<3>();
    else
      require_absent(self + "pairwise_factors", fresh ? score + " have no pairwise factors" : all_reused);
    if (fresh && c.use_relative_pe)
      w.attention.relative_position = matrix(self + "relative_position_embeddings");
    else
      require_absent(self + "relative_position_embeddings", fresh ? "use_relative_pe is false" : all_reused);
    w.attention.value = linear(self + "value");
    w.attention.output = linear(p + "attention.output.dense");
    w.attention_norm = {vector(p + "attention.output.LayerNorm.weight"), vector(p + "attention.output.LayerNorm.bias")};
    w.feed_forward = {linear(p + "intermediate.dense"), linear(p + "output.dense")};
    w.output_norm = {vector(p + "output.LayerNorm.weight"), vector(p + "output.LayerNorm.bias")};
    return w;
  }

  model_config config_;
  safetensors_reader file_;
  std::string root_;
  std::deque<loaded_tensor<T>> tensors_;  // a deque: views into its elements stay valid as it grows
  std::optional<reuseformer::encoder<T, Score, Arch>> encoder_;
  std::optional<reuseformer::embeddings<T, Arch>> embeddings_;
};

}  // namespace reuseformer::io
