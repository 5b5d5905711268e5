#pragma once
// BERT's input embeddings (docs/semantics.md §Embeddings), Hugging Face's `embeddings` block:
//   out[b, n] = LN(word[ids[b, n]] + position[n] + token_type[types[b, n]])
// with absolute positions 0 .. N-1 and token type 0 when no types are given.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "reuseformer/core/error.hpp"
#include "reuseformer/core/parallel.hpp"
#include "reuseformer/core/tensor_view.hpp"
#include "reuseformer/layers/layer_norm.hpp"
#include "reuseformer/simd/arch.hpp"

namespace reuseformer {

// Views of the embedding tables, Hugging Face names in comments.
template <class T>
struct embeddings_weights {
  matrix_view<const T> word;        // embeddings.word_embeddings.weight: [vocab_size, d]
  matrix_view<const T> position;    // embeddings.position_embeddings.weight: [max_position_embeddings, d]
  matrix_view<const T> token_type;  // embeddings.token_type_embeddings.weight: [type_vocab_size, d]
  layer_norm_weights<T> norm;       // embeddings.LayerNorm: [d], [d]
};

struct embeddings_options {
  index_t hidden_size = 768;              // d
  index_t vocab_size = 30522;             // V
  index_t max_position_embeddings = 512;  // longest sequence
  index_t type_vocab_size = 2;            // token types (segments)
  double layer_norm_eps = 1e-12;
};

template <class T, class Arch = simd::default_arch>
class embeddings {
 public:
  // Throws reuseformer::error when a table is not of the shape the options
  // give, naming it (prefix + "word_embeddings.weight", ...).
  embeddings(const embeddings_weights<T>& w, const embeddings_options& o, std::string_view prefix = "embeddings.")
      : w_(w), options_(o), norm_(w.norm, o.hidden_size, o.layer_norm_eps, std::string(prefix) + "LayerNorm") {
    detail::require_shape(w.word, {o.vocab_size, o.hidden_size}, std::string(prefix) + "word_embeddings.weight");
    detail::require_shape(w.position, {o.max_position_embeddings, o.hidden_size},
                          std::string(prefix) + "position_embeddings.weight");
    detail::require_shape(w.token_type, {o.type_vocab_size, o.hidden_size},
                          std::string(prefix) + "token_type_embeddings.weight");
  }

  [[nodiscard]] index_t hidden_size() const { return options_.hidden_size; }
  [[nodiscard]] std::size_t parameter_bytes() const {
    return static_cast<std::size_t>(w_.word.size() + w_.position.size() + w_.token_type.size()) * sizeof(T) +
           norm_.parameter_bytes();
  }

  // out [B, N, d] from ids [B, N] and optional token types [B, N] (empty: all 0).
  // Throws reuseformer::error, before writing anything, on a wrong shape, N
  // above max_position_embeddings, or an id or type outside its table (the
  // message names the first such [b, n]). Allocates nothing.
  void forward(tensor_view<const std::int64_t, 2> ids, tensor_view<const std::int64_t, 2> types, tensor_view<T, 3> out,
               int threads = 1) const {
    const index_t batch = ids.extent(0), seq = ids.extent(1), d = hidden_size();
    if (batch < 1 || seq < 1)  // the message is built only on failure: forward() must not allocate
      throw error(detail::concat("input_ids: expected a shape [B, N] with B, N >= 1, found ",
                                 detail::format_shape(ids.shape())));
    detail::require(seq <= options_.max_position_embeddings, "input_ids: expected at most ",
                    options_.max_position_embeddings, " tokens (max_position_embeddings), found ", seq);
    if (!types.empty()) detail::require_shape(types, {batch, seq}, "token_type_ids");
    detail::require_shape(out, {batch, seq, d}, "output");
    check_range(ids, options_.vocab_size, "input_ids");
    if (!types.empty()) check_range(types, options_.type_vocab_size, "token_type_ids");

    parallel_for(batch * seq, threads, [&](index_t row, int) {
      const index_t n = row % seq;
      const T* word = w_.word.data() + ids.data()[row] * d;
      const T* position = w_.position.data() + n * d;
      const T* type = w_.token_type.data() + (types.empty() ? 0 : types.data()[row]) * d;
      T* y = out.data() + row * d;
      for (index_t c = 0; c < d; ++c) y[c] = word[c] + position[c] + type[c];
    });
    norm_.forward(out.data(), out.data(), batch * seq, threads);
  }

 private:
  static void check_range(tensor_view<const std::int64_t, 2> values, index_t size, std::string_view name) {
    for (index_t at = 0; at < values.size(); ++at) {
      const std::int64_t v = values.data()[at];
      detail::require(v >= 0 && v < size, name, "[", at / values.extent(1), ", ", at % values.extent(1),
                      "]: expected a value in [0, ", size, "), found ", v);
    }
  }

  embeddings_weights<T> w_;
  embeddings_options options_;
  layer_norm<T, Arch> norm_;
};

}  // namespace reuseformer
