#pragma once
// Multi-head self-attention (docs/semantics.md §Standard attention), BERT's
// `attention.self` plus `attention.output.dense`, with optional score reuse
// (§Score reuse there) and a compile-time score function (§Symmetric and
// pairwise scores there, attention/score_function.hpp):
//   Q = X W_Qᵀ + b_Q                     (fresh heads only: (H - K_l)*dh rows)
//   K = X W_Kᵀ + b_K (standard), K = Q (symmetric), or L_h = Q_h P_h Q_hᵀ (pairwise)
//   V = X W_Vᵀ + b_V                     (all H heads)
//   A_h = softmax(L_h / sqrt(dh) + R_h + M)  for fresh heads h < H - K_l, L_h = Q_h K_hᵀ,
//   A_h = S^{l-1}[h - (H - K_l)]             for reused heads,
//   out = concat_h(A_h V_h) W_Oᵀ + b_O

#include <cmath>
#include <cstddef>
#include <initializer_list>
#include <string>
#include <string_view>

#include "reuseformer/attention/pairwise_factors.hpp"
#include "reuseformer/attention/reuse_state.hpp"
#include "reuseformer/attention/score_function.hpp"
#include "reuseformer/attention/scaled_dot_product.hpp"
#include "reuseformer/core/error.hpp"
#include "reuseformer/core/sequences.hpp"
#include "reuseformer/core/thread_scratch.hpp"
#include "reuseformer/core/workspace.hpp"
#include "reuseformer/layers/config.hpp"
#include "reuseformer/layers/linear.hpp"
#include "reuseformer/layers/forward_interface.hpp"
#include "reuseformer/simd/arch.hpp"

namespace reuseformer {

// Views of the attention parameters, Hugging Face names in comments; W: the
// element type of the Linears' weights (linear_weights).
template <class T, class W = T>
struct attention_weights {
  linear_weights<T, W> query;   // attention.self.query: [(H - K)*dh, d], [(H - K)*dh]; empty when K = H
  linear_weights<T, W> key;     // attention.self.key: same shapes as query; empty unless standard scores
  linear_weights<T, W> value;   // attention.self.value: [d, d], [d]
  linear_weights<T, W> output;  // attention.output.dense: [d, d], [d]
  // attention.self.relative_position_embeddings: [H - K, 2P - 1], only with
  // relative_position_bias (TF use_relative_pe).
  matrix_view<const T> relative_position{};
  // attention.self.pairwise_factors: [H - K, dh, dh], only for pairwise scores.
  tensor_view<const T, 3> pairwise_factors{};
};

struct attention_options {
  index_t hidden_size = 768;         // d
  index_t num_attention_heads = 12;  // H, divides d
  bool causal = false;
  index_t reused_heads = 0;       // K in [0, H]: heads taken from the previous layer
  index_t pe_max_seq_length = 0;  // P > 0: relative-position bias table of 2P - 1 entries per fresh head
};

namespace detail {
inline const attention_options& validated(const attention_options& o) {
  require_heads(o.hidden_size, o.num_attention_heads);
  require(o.reused_heads >= 0 && o.reused_heads <= o.num_attention_heads, "reused heads: expected a head count in [0, ",
          o.num_attention_heads, "], found ", o.reused_heads);
  require(o.pe_max_seq_length >= 0, "pe_max_seq_length: expected 0 (no relative-position bias) or P >= 1, found ",
          o.pe_max_seq_length);
  return o;
}
}  // namespace detail

template <class T, score_function Score = score_function::standard, class Arch = simd::default_arch,
          class Products = packed_products>
class multi_head_attention : public detail::forward_interface<multi_head_attention<T, Score, Arch, Products>, T> {
 public:
  static constexpr bool residual = false;
  static constexpr score_function scores = Score;

  // `prefix` names the tensors in error messages, Hugging Face style: a tensor is
  // prefix + "self.query.weight", prefix + "output.dense.bias", ...
  // Throws reuseformer::error for invalid options or a tensor that does not fit
  // them and the score function: a wrong shape (query/key rows and factors follow
  // the fresh head count), a key or factors the score function has no use for,
  // or factors that break the constraint of pairwise_diagonal / pairwise_symmetric.
  template <class W = T>
    requires packs_weights_of<Products, T, Arch, W>
  multi_head_attention(const attention_weights<T, W>& w, const attention_options& options,
                       std::string_view prefix = "attention.")
      : options_(detail::validated(options)),
        projection_(
            std::initializer_list<linear_part<T, W>>{
                {w.query, fresh_width(), std::string(prefix) + "self.query"},
                {without_unused_key(w.key, prefix), key_width(), std::string(prefix) + "self.key"},
                {w.value, options.hidden_size, std::string(prefix) + "self.value"}},
            options.hidden_size),
        output_(w.output, options.hidden_size, options.hidden_size, std::string(prefix) + "output.dense"),
        relative_position_(w.relative_position),
        pairwise_factors_(w.pairwise_factors) {
    check_pairwise_factors(std::string(prefix) + "self.pairwise_factors");
    const std::string table = std::string(prefix) + "self.relative_position_embeddings";
    if (options.pe_max_seq_length > 0 && fresh_heads() > 0)
      detail::require_shape(relative_position_, {fresh_heads(), 2 * options.pe_max_seq_length - 1}, table);
    else
      detail::require(relative_position_.data() == nullptr, table, ": expected no tensor (",
                      options.pe_max_seq_length > 0 ? "no fresh heads" : "no relative-position bias", "), found shape ",
                      detail::format_shape(relative_position_.shape()));
  }

  [[nodiscard]] index_t hidden_size() const { return options_.hidden_size; }
  [[nodiscard]] index_t heads() const { return options_.num_attention_heads; }
  [[nodiscard]] index_t reused_heads() const { return options_.reused_heads; }
  [[nodiscard]] index_t fresh_heads() const { return heads() - reused_heads(); }
  [[nodiscard]] index_t attention_layers() const { return 1; }
  [[nodiscard]] index_t first_reused_heads() const { return reused_heads(); }
  [[nodiscard]] std::size_t parameter_bytes() const {
    return projection_.parameter_bytes() + output_.parameter_bytes() + referenced_parameter_bytes();
  }
  // Bytes of the caller's tensors the layer still reads after construction
  // (relative-position table, pairwise factors); part of parameter_bytes().
  [[nodiscard]] std::size_t referenced_parameter_bytes() const {
    return static_cast<std::size_t>(relative_position_.size() + pairwise_factors_.size()) * sizeof(T);
  }

  // Planning and execution: for forward_interface and the modules built from this one.
 private:
  friend class detail::forward_interface<multi_head_attention, T>;
  friend struct detail::module_access;

  struct buffers {
    T* projected;  // [T, projection width]: Q, then K (standard scores), then V
    T* factored;   // [T, (H - K)*dh]: Q P (pairwise scores), else none
    T* context;    // [T, d]
    thread_scratch<T> scratch;
  };

  [[nodiscard]] buffers plan(arena& a, const batch_shape& shape, int threads) const {
    const index_t rows = shape.tokens, d = hidden_size();
    buffers b{a.take<T>(rows * projection_.out_features()),
              has_pairwise_factors(Score) ? a.take<T>(rows * fresh_width()) : nullptr,
              a.take<T>(rows * d),
              {}};
    const index_t linear_scratch = std::max(projection_.scratch_elements(), output_.scratch_elements());
    const index_t factors_scratch =
        has_pairwise_factors(Score) ? attention::pairwise_scratch_elements<T, Arch>(rows, head_dim()) : 0;
    const index_t core_scratch =
        attention::scratch_elements<T, Arch>(problem(sequences::dense(shape.batch, shape.max_length)));
    b.scratch = detail::take_thread_scratch<T>(a, std::max({linear_scratch, factors_scratch, core_scratch}), threads);
    return b;
  }

  // stream += Attention(x) for a standalone call (io.reused holds the heads to reuse).
  template <std::size_t Rank>
  void run(const T* x, T* stream, const sequences& batch, const T* additive_mask, const buffers& b,
           const attention_io<T, Rank>& io) const {
    execute(x, stream, batch, additive_mask, b, detail::standalone_heads(io, heads(), reused_heads()));
  }

  // stream += Attention(x). Shapes: x, stream [T, d]; x may equal stream.
  // `routing` says where reused heads come from and fresh heads go (its q, k are
  // filled in here). `after(row, rows)`, when given, runs on rows of stream as
  // soon as they are final (the residual LayerNorm of an encoder layer).
  template <class AfterRows = std::nullptr_t>
  void execute(const T* x, T* stream, const sequences& batch, const T* additive_mask, const buffers& b,
               attention::head_io<T> routing, AfterRows after = nullptr) const {
    const index_t rows = batch.tokens(), d = hidden_size();
    const projections p = project(x, rows, b);
    routing.q = p.query;
    routing.k = p.key;
    route_relative_bias(routing);
    attention::scaled_dot_product<T, Arch>(problem(batch), scale(), routing, p.value,
                                           gemm::matrix<T>{b.context, rows, d, d}, additive_mask, b.scratch);
    finish(stream, rows, b, after);
  }

  // The projections of `rows` rows as they lie in b: the logits' operands
  // (query Q, or Q P for pairwise scores; key K, or Q without a key projection)
  // and the values V of all heads. Serves execute() and decoding, which caches
  // `key` and `value`.
  struct projections {
    gemm::matrix<const T> query, key, value;
  };
  [[nodiscard]] projections operands(const buffers& b, index_t rows) const {
    const index_t width = fresh_width(), ld = projection_.out_features();
    const gemm::matrix<const T> q{b.projected, rows, width, ld};
    return {has_pairwise_factors(Score) ? gemm::matrix<const T>{b.factored, rows, width, width} : q,
            has_key_projection(Score) ? gemm::matrix<const T>{b.projected + width, rows, width, ld} : q,
            {b.projected + width + key_width(), rows, hidden_size(), ld}};
  }

  // Computes operands(b, rows) from x [rows, d].
  projections project(const T* x, index_t rows, const buffers& b) const {
    const index_t d = hidden_size(), width = fresh_width(), ld = projection_.out_features();
    // One product for every projection: Q | K | V side by side.
    projection_.forward(gemm::matrix<const T>{x, rows, d, d}, gemm::matrix<T>{b.projected, rows, ld, ld},
                        gemm::update::overwrite, b.scratch);
    if constexpr (has_pairwise_factors(Score))
      if (width > 0)
        attention::apply_pairwise_factors<T, Arch>(
            gemm::matrix<const T>{b.projected, rows, width, ld}, pairwise_factors_.data(), fresh_heads(), head_dim(),
            Score == score_function::pairwise_diagonal, gemm::matrix<T>{b.factored, rows, width, width}, b.scratch);
    return operands(b, rows);
  }

  // stream += C W_Oᵀ + b_O for the context C [rows, d] in b.context, then after(row, rows).
  // Residual add (for encoder layers) comes free: the product accumulates into stream.
  template <class AfterRows = std::nullptr_t>
  void finish(T* stream, index_t rows, const buffers& b, AfterRows after = nullptr) const {
    const index_t d = hidden_size();
    output_.forward(gemm::matrix<const T>{b.context, rows, d, d}, gemm::matrix<T>{stream, rows, d, d},
                    gemm::update::accumulate, b.scratch, after);
  }

  [[nodiscard]] T scale() const { return T(1) / std::sqrt(static_cast<T>(head_dim())); }

  // The fresh heads' relative-position bias rows, for the attention core.
  void route_relative_bias(attention::head_io<T>& routing) const {
    routing.relative_bias = relative_position_.data();
    routing.relative_span = relative_position_.extent(1);
  }

  [[nodiscard]] index_t head_dim() const { return hidden_size() / heads(); }
  [[nodiscard]] index_t fresh_width() const { return fresh_heads() * head_dim(); }
  [[nodiscard]] index_t key_width() const { return has_key_projection(Score) ? fresh_width() : 0; }
  [[nodiscard]] attention::problem problem(const sequences& batch) const {
    return {batch, heads(), head_dim(), options_.causal, fresh_heads(), has_symmetric_logits(Score)};
  }

  // Score functions without a key projection must not be handed one: a
  // checkpoint that has it was trained for another score function.
  template <class W>
  static const linear_weights<T, W>& without_unused_key(const linear_weights<T, W>& key, std::string_view prefix) {
    if constexpr (!has_key_projection(Score)) {
      const auto absent = [&](const auto& view, std::string_view part) {
        detail::require(view.empty(), prefix, "self.key.", part, ": expected no tensor (", name_of(Score),
                        " scores have no key projection), found shape ", detail::format_shape(view.shape()));
      };
      absent(key.weight, "weight");
      absent(key.bias, "bias");
    }
    return key;
  }

  void check_pairwise_factors(const std::string& name) const {
    const tensor_view<const T, 3>& p = pairwise_factors_;
    if constexpr (!has_pairwise_factors(Score)) {
      detail::require(p.empty(), name, ": expected no tensor (", name_of(Score), " scores), found shape ",
                      detail::format_shape(p.shape()));
    } else {
      detail::require_shape(p, {fresh_heads(), head_dim(), head_dim()}, name);
      for (index_t h = 0; h < p.extent(0); ++h)
        for (index_t i = 0; i < head_dim(); ++i)
          for (index_t j = 0; j < i; ++j) {
            if constexpr (Score == score_function::pairwise_diagonal)
              detail::require(p(h, i, j) == T(0) && p(h, j, i) == T(0), name,
                              ": expected diagonal matrices (pairwise_diagonal scores), found [", h, ", ", i, ", ", j,
                              "] = ", p(h, i, j), " and [", h, ", ", j, ", ", i, "] = ", p(h, j, i));
            if constexpr (Score == score_function::pairwise_symmetric)
              detail::require(p(h, i, j) == p(h, j, i), name,
                              ": expected symmetric matrices (pairwise_symmetric scores), found [", h, ", ", i, ", ", j,
                              "] = ", p(h, i, j), " but [", h, ", ", j, ", ", i, "] = ", p(h, j, i));
          }
    }
  }

  attention_options options_;
  linear<T, Arch, Products> projection_;  // query, key (standard scores only) and value, one product
  linear<T, Arch, Products> output_;
  matrix_view<const T> relative_position_;
  tensor_view<const T, 3> pairwise_factors_;
};

}  // namespace reuseformer
