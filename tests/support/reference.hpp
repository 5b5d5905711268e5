#pragma once
// A plain double-precision reference of the encoder (docs/semantics.md
// §Standard attention, §Encoder layers): the formulas written in Eigen's
// double-precision matrix algebra, sharing no code with the library's kernels
// (nor its Eigen interop), so a bug in a kernel cannot hide in its own reference.
#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <limits>
#include <vector>

#include <reuseformer/layers/config.hpp>
#include <reuseformer/layers/encoder_layer.hpp>

namespace reuseformer_test::reference {

using reuseformer::index_t;
using matrix = std::vector<double>;  // row-major

// Tolerances against the double reference, for outputs of magnitude ~1.
// double: the library and the reference differ only in summation order
// (~1e-16 per operation, a few hundred operations deep).
// float: inputs and weights are exact in float, so only the arithmetic differs.
// Each dot product of length k <= 3072 accumulates ~sqrt(k) * 6e-8 relative
// error; softmax and LayerNorm pass it through with a gain of order 1; a
// post-LN layer renormalises. Observed worst cases are ~3e-6; 2e-5 leaves room
// without hiding a real bug (a wrong head or mask shows up as errors >= 1e-2).
template <class T>
inline constexpr double tolerance = std::is_same_v<T, float> ? 2e-5 : 1e-11;

using eigen_matrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// x [rows, size / rows] as an Eigen matrix, and an Eigen matrix's values back.
inline Eigen::Map<const eigen_matrix> as_matrix(const matrix& x, index_t rows) {
  return {x.data(), rows, rows == 0 ? 0 : static_cast<index_t>(x.size()) / rows};
}
inline matrix values(const eigen_matrix& m) { return {m.data(), m.data() + m.size()}; }

// A library tensor's elements [rows, cols] (row-major) in double.
template <class T>
eigen_matrix in_double(const T* data, index_t rows, index_t cols) {
  using source = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  return Eigen::Map<const source>(data, rows, cols).template cast<double>();
}
template <class T>
Eigen::RowVectorXd in_double(const reuseformer::vector_view<const T>& v) {
  return in_double(v.data(), 1, v.extent(0));
}

// y [rows, out] = x [rows, in] Wᵀ + b
template <class T>
eigen_matrix product(const eigen_matrix& x, const reuseformer::linear_weights<T>& w) {
  const eigen_matrix weight = in_double(w.weight.data(), w.weight.extent(0), w.weight.extent(1));
  return (x * weight.transpose()).rowwise() + in_double(w.bias);
}
template <class T>
matrix linear(const matrix& x, index_t rows, const reuseformer::linear_weights<T>& w) {
  return values(product(as_matrix(x, rows), w));
}

template <class T>
matrix layer_norm(const matrix& x, index_t rows, const reuseformer::layer_norm_weights<T>& w, double eps) {
  const auto in = as_matrix(x, rows);
  const eigen_matrix centred = in.colwise() - in.rowwise().mean();
  const Eigen::ArrayXd inverse_std = (centred.array().square().rowwise().mean() + eps).sqrt().inverse();
  const eigen_matrix normed = centred.array().colwise() * inverse_std;
  return values((normed.array().rowwise() * in_double(w.weight).array()).rowwise() + in_double(w.bias).array());
}

inline double activate(reuseformer::activation act, double x) {
  switch (act) {
    case reuseformer::activation::gelu:
      return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0)));
    case reuseformer::activation::gelu_tanh:
      return 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
    case reuseformer::activation::relu:
      return x > 0 ? x : 0;
  }
  return x;
}

// Multi-head attention of x [B, N, d] with score reuse (docs/semantics.md
// §Score reuse) and the score function its tensors imply (§Symmetric and
// pairwise scores there): logits q_i·k_j with a key projection, q_i·q_j without one, q_i P_h q_jᵀ with pairwise
// factors. mask: empty or [B, N] of 0/1. The layer computes H - reused fresh heads and takes heads H - reused .. H - 1
// from `previous` ([B, previous_heads, N, N], its first `reused` heads). Returns the output and the stack it used [B,
// H, N, N]. A query with no visible key gets a zero context (the library's documented rule).
struct attention_result {
  matrix output;
  std::vector<double> stack;
};

template <class T>
attention_result attention(const matrix& x, index_t batch, index_t seq, index_t heads,
                           const reuseformer::attention_weights<T>& w, const std::vector<int>& mask, bool causal,
                           index_t reused = 0, const std::vector<double>& previous = {}, index_t previous_heads = 0) {
  const index_t d = w.value.weight.extent(0), dh = d / heads, rows = batch * seq, fresh = heads - reused;
  const index_t span = w.relative_position.empty() ? 0 : w.relative_position.extent(1);
  const auto in = as_matrix(x, rows);
  const eigen_matrix q = fresh ? product(in, w.query) : eigen_matrix();
  const eigen_matrix k = fresh && !w.key.weight.empty() ? product(in, w.key) : q;
  const eigen_matrix v = product(in, w.value);
  const auto& factors = w.pairwise_factors;
  constexpr double none = -std::numeric_limits<double>::infinity();
  std::vector<double> stack(static_cast<std::size_t>(batch * heads * seq * seq), 0.0);
  eigen_matrix context = eigen_matrix::Zero(rows, d);
  for (index_t b = 0; b < batch; ++b)
    for (index_t h = 0; h < heads; ++h) {
      Eigen::Map<eigen_matrix> p(&stack[static_cast<std::size_t>((b * heads + h) * seq * seq)], seq, seq);
      if (h >= fresh) {  // reused: head h - fresh of the previous stack
        p = Eigen::Map<const eigen_matrix>(
            &previous[static_cast<std::size_t>((b * previous_heads + h - fresh) * seq * seq)], seq, seq);
      } else {
        const auto qh = q.block(b * seq, h * dh, seq, dh), kh = k.block(b * seq, h * dh, seq, dh);
        eigen_matrix logits = factors.empty()
                                  ? eigen_matrix(qh * kh.transpose())
                                  : eigen_matrix(qh * in_double(&factors(h, 0, 0), dh, dh) * kh.transpose());
        logits /= std::sqrt(double(dh));
        for (index_t i = 0; i < seq; ++i) {
          double top = none;
          for (index_t j = 0; j < seq; ++j) {
            const bool visible = (mask.empty() || mask[b * seq + j] == 1) && (!causal || j <= i);
            if (visible && span)
              logits(i, j) += double(w.relative_position(h, std::clamp(j - i + (span - 1) / 2, index_t(0), span - 1)));
            logits(i, j) = visible ? logits(i, j) : none;
            top = std::max(top, logits(i, j));
          }
          if (top == none) continue;  // no visible key: a zero row
          const Eigen::RowVectorXd e = (logits.row(i).array() - top).exp();
          p.row(i) = e / e.sum();
        }
      }
      context.block(b * seq, h * dh, seq, dh) = p * v.block(b * seq, h * dh, seq, dh);
    }
  return {values(product(context, w.output)), std::move(stack)};
}

// One layer; `stack` holds the previous layer's probability stack [B, H, N, N]
// on entry (ignored when the layer reuses nothing) and this layer's on exit.
template <class T>
matrix encoder_layer(const matrix& x, index_t batch, index_t seq, const reuseformer::encoder_config& c,
                     const reuseformer::encoder_layer_weights<T>& w, const std::vector<int>& mask, index_t reused,
                     std::vector<double>& stack) {
  const index_t rows = batch * seq;
  const auto add = [](matrix a, const matrix& b) {
    for (std::size_t i = 0; i < a.size(); ++i) a[i] += b[i];
    return a;
  };
  const auto ffn = [&](const matrix& in) {
    matrix hidden = linear(in, rows, w.feed_forward.intermediate);
    for (double& value : hidden) value = activate(c.hidden_act, value);
    return linear(hidden, rows, w.feed_forward.output);
  };
  const auto attn = [&](const matrix& in) {
    attention_result r = attention(in, batch, seq, c.num_attention_heads, w.attention, mask, c.causal, reused, stack,
                                   c.num_attention_heads);
    stack = std::move(r.stack);
    return r.output;
  };
  if (c.norm == reuseformer::norm_placement::post) {
    const matrix h = layer_norm(add(x, attn(x)), rows, w.attention_norm, c.layer_norm_eps);
    return layer_norm(add(h, ffn(h)), rows, w.output_norm, c.layer_norm_eps);
  }
  const matrix h = add(x, attn(layer_norm(x, rows, w.attention_norm, c.layer_norm_eps)));
  return add(h, ffn(layer_norm(h, rows, w.output_norm, c.layer_norm_eps)));
}

// The encoder; `stacks`, when given, receives every layer's probability stack.
template <class T>
matrix encoder(matrix x, index_t batch, index_t seq, const reuseformer::encoder_config& c,
               const std::vector<reuseformer::encoder_layer_weights<T>>& layers, const std::vector<int>& mask,
               std::vector<std::vector<double>>* stacks = nullptr) {
  std::vector<double> stack;
  for (std::size_t l = 0; l < layers.size(); ++l) {
    x = encoder_layer(x, batch, seq, c, layers[l], mask, c.reused_heads(static_cast<index_t>(l)), stack);
    if (stacks) stacks->push_back(stack);
  }
  return x;
}

}  // namespace reuseformer_test::reference
