#pragma once
// Standard multi-head self-attention (DESIGN §1.1), BERT's `attention.self` plus
// `attention.output.dense`:
//   Q = X W_Qᵀ + b_Q,  K = X W_Kᵀ + b_K,  V = X W_Vᵀ + b_V
//   C_h = softmax(Q_h K_hᵀ / sqrt(dh) + M) V_h,   out = concat_h(C_h) W_Oᵀ + b_O

#include <cmath>
#include <cstddef>
#include <string>
#include <string_view>

#include "reuseformer/attention/scaled_dot_product.hpp"
#include "reuseformer/core/error.hpp"
#include "reuseformer/core/workspace.hpp"
#include "reuseformer/layers/linear.hpp"
#include "reuseformer/layers/stream_module.hpp"
#include "reuseformer/simd/arch.hpp"

namespace reuseformer {

// Views of the four projections, each torch.nn.Linear(d, d) ([d, d] weight, [d] bias).
template <class T>
struct attention_weights {
  linear_weights<T> query, key, value, output;
};

namespace detail {
inline void require_heads(index_t hidden, index_t heads) {
  require(hidden >= 1, "hidden_size: expected >= 1, found ", hidden);
  require(heads >= 1, "num_attention_heads: expected >= 1, found ", heads);
  require(hidden % heads == 0, "num_attention_heads: expected a divisor of hidden_size ", hidden,
          ", found ", heads);
}
}  // namespace detail

template <class T, class Arch = simd::default_arch>
class multi_head_attention : public detail::stream_module<multi_head_attention<T, Arch>, T> {
 public:
  static constexpr bool residual = false;

  // `prefix` names the tensors in error messages, Hugging Face style: a tensor is
  // prefix + "self.query.weight", prefix + "output.dense.bias", ...
  // Throws reuseformer::error when heads does not divide hidden or a tensor has
  // the wrong shape.
  multi_head_attention(const attention_weights<T>& w, index_t hidden, index_t heads, bool causal,
                       std::string_view prefix = "attention.")
      : heads_((detail::require_heads(hidden, heads), heads)),
        causal_(causal),
        query_(w.query, hidden, hidden, std::string(prefix) + "self.query"),
        key_(w.key, hidden, hidden, std::string(prefix) + "self.key"),
        value_(w.value, hidden, hidden, std::string(prefix) + "self.value"),
        output_(w.output, hidden, hidden, std::string(prefix) + "output.dense") {}

  [[nodiscard]] index_t hidden_size() const { return query_.in_features(); }
  [[nodiscard]] index_t heads() const { return heads_; }
  [[nodiscard]] std::size_t parameter_bytes() const {
    return query_.parameter_bytes() + key_.parameter_bytes() + value_.parameter_bytes() +
           output_.parameter_bytes();
  }

  struct buffers {
    T *q, *k, *v, *context;  // each [B*N, d]
    detail::thread_scratch<T> scratch;
  };

  [[nodiscard]] buffers plan(arena& a, index_t batch, index_t seq, int threads) const {
    const index_t rows = batch * seq, d = hidden_size();
    buffers b{a.take<T>(rows * d), a.take<T>(rows * d), a.take<T>(rows * d), a.take<T>(rows * d),
              {}};
    const index_t linear_scratch = query_.scratch_elements(rows, threads);
    const index_t core_scratch = attention::scratch_elements<T>(problem(batch, seq));
    b.scratch = detail::thread_scratch<T>::take(a, std::max(linear_scratch, core_scratch), threads);
    return b;
  }

  // stream += Attention(x). Shapes: x, stream [B*N, d]; x may equal stream.
  void run(const T* x, T* stream, index_t batch, index_t seq, const T* additive_mask,
           const buffers& b, int threads) const {
    const index_t rows = batch * seq, d = hidden_size();
    const gemm::matrix<const T> in{x, rows, d, d};
    const auto project = [&](const linear<T, Arch>& layer, T* out) {
      layer.forward(in, gemm::matrix<T>{out, rows, d, d}, gemm::update::overwrite, threads,
                    b.scratch.data, b.scratch.stride);
    };
    project(query_, b.q);
    project(key_, b.k);
    project(value_, b.v);
    const T scale = T(1) / std::sqrt(static_cast<T>(d / heads_));
    attention::scaled_dot_product<Arch, T>(
        problem(batch, seq), scale, gemm::matrix<const T>{b.q, rows, d, d},
        gemm::matrix<const T>{b.k, rows, d, d}, gemm::matrix<const T>{b.v, rows, d, d},
        gemm::matrix<T>{b.context, rows, d, d}, additive_mask, threads, b.scratch.data,
        b.scratch.stride);
    // Residual add (for encoder layers) comes free: the product accumulates into stream.
    output_.forward(gemm::matrix<const T>{b.context, rows, d, d}, gemm::matrix<T>{stream, rows, d, d},
                    gemm::update::accumulate, threads, b.scratch.data, b.scratch.stride);
  }

 private:
  [[nodiscard]] attention::problem problem(index_t batch, index_t seq) const {
    return {batch, seq, heads_, hidden_size() / heads_, causal_};
  }

  index_t heads_;
  bool causal_;
  linear<T, Arch> query_, key_, value_, output_;
};

}  // namespace reuseformer
