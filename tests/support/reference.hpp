#pragma once
// A plain double-precision reference of the encoder (docs/semantics.md
// §Standard attention, §Encoder layers): loops written from the formulas, sharing no code with the library's kernels, so a
// bug in a kernel cannot hide in its own reference.
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


// y [rows, out] = x [rows, in] Wᵀ + b
template <class T>
matrix linear(const matrix& x, index_t rows, const reuseformer::linear_weights<T>& w) {
  const index_t out = w.weight.extent(0), in = w.weight.extent(1);
  matrix y(static_cast<std::size_t>(rows * out));
  for (index_t i = 0; i < rows; ++i)
    for (index_t o = 0; o < out; ++o) {
      double acc = w.bias(o);
      for (index_t k = 0; k < in; ++k) acc += x[i * in + k] * double(w.weight(o, k));
      y[i * out + o] = acc;
    }
  return y;
}

template <class T>
matrix layer_norm(const matrix& x, index_t rows, const reuseformer::layer_norm_weights<T>& w,
                  double eps) {
  const index_t d = w.weight.extent(0);
  matrix y(x.size());
  for (index_t i = 0; i < rows; ++i) {
    double mean = 0, var = 0;
    for (index_t j = 0; j < d; ++j) mean += x[i * d + j];
    mean /= double(d);
    for (index_t j = 0; j < d; ++j) var += (x[i * d + j] - mean) * (x[i * d + j] - mean);
    var /= double(d);
    for (index_t j = 0; j < d; ++j)
      y[i * d + j] = (x[i * d + j] - mean) / std::sqrt(var + eps) * w.weight(j) + w.bias(j);
  }
  return y;
}

inline double activate(reuseformer::activation act, double x) {
  switch (act) {
    case reuseformer::activation::gelu: return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0)));
    case reuseformer::activation::gelu_tanh:
      return 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
    case reuseformer::activation::relu: return x > 0 ? x : 0;
  }
  return x;
}

// Multi-head attention of x [B, N, d] with score reuse (docs/semantics.md
// §Score reuse) and the score function its tensors imply (§Symmetric and
// pairwise scores there): logits q_i·k_j with a key projection, q_i·q_j without one, q_i P_h q_jᵀ with pairwise factors.
// mask: empty or [B, N] of 0/1. The layer computes H - reused fresh heads and
// takes heads H - reused .. H - 1 from `previous` ([B, previous_heads, N, N],
// its first `reused` heads). Returns the output and the stack it used [B, H, N, N].
// A query with no visible key gets a zero context (the library's documented rule).
struct attention_result {
  matrix output;
  std::vector<double> stack;
};

template <class T>
attention_result attention(const matrix& x, index_t batch, index_t seq, index_t heads,
                           const reuseformer::attention_weights<T>& w, const std::vector<int>& mask, bool causal,
                           index_t reused = 0, const std::vector<double>& previous = {},
                           index_t previous_heads = 0) {
  const index_t d = w.value.weight.extent(0), dh = d / heads, rows = batch * seq, fresh = heads - reused;
  const index_t span = w.relative_position.empty() ? 0 : w.relative_position.extent(1);
  const matrix q = fresh ? linear(x, rows, w.query) : matrix{};
  const matrix k = fresh && !w.key.weight.empty() ? linear(x, rows, w.key) : q;
  const auto& factors = w.pairwise_factors;
  const matrix v = linear(x, rows, w.value);
  const index_t qk = fresh * dh;
  std::vector<double> stack(static_cast<std::size_t>(batch * heads * seq * seq), 0.0);
  const double scale = 1 / std::sqrt(double(dh));
  for (index_t b = 0; b < batch; ++b)
    for (index_t h = 0; h < heads; ++h)
      for (index_t i = 0; i < seq; ++i) {
        double* p = &stack[static_cast<std::size_t>(((b * heads + h) * seq + i) * seq)];
        if (h >= fresh) {  // reused: row i of head h - fresh of the previous stack
          const double* from = &previous[static_cast<std::size_t>(((b * previous_heads + h - fresh) * seq + i) * seq)];
          std::copy(from, from + seq, p);
          continue;
        }
        std::vector<double> logits(static_cast<std::size_t>(seq), -std::numeric_limits<double>::infinity());
        double top = -std::numeric_limits<double>::infinity();
        for (index_t j = 0; j < seq; ++j) {
          const bool visible = (mask.empty() || mask[b * seq + j] == 1) && (!causal || j <= i);
          if (!visible) continue;
          const double* qi = &q[static_cast<std::size_t>((b * seq + i) * qk + h * dh)];
          const double* kj = &k[static_cast<std::size_t>((b * seq + j) * qk + h * dh)];
          double s = 0;
          for (index_t c = 0; c < dh; ++c)
            if (factors.empty())
              s += qi[c] * kj[c];
            else
              for (index_t e = 0; e < dh; ++e) s += qi[c] * double(factors(h, c, e)) * kj[e];
          s *= scale;
          if (span) s += double(w.relative_position(h, std::clamp(j - i + (span - 1) / 2, index_t(0), span - 1)));
          logits[j] = s;
          top = std::max(top, s);
        }
        if (top == -std::numeric_limits<double>::infinity()) continue;  // zero row
        double sum = 0;
        for (index_t j = 0; j < seq; ++j) sum += std::exp(logits[j] - top);
        for (index_t j = 0; j < seq; ++j) p[j] = std::exp(logits[j] - top) / sum;
      }
  matrix context(static_cast<std::size_t>(rows * d), 0.0);
  for (index_t b = 0; b < batch; ++b)
    for (index_t h = 0; h < heads; ++h)
      for (index_t i = 0; i < seq; ++i)
        for (index_t j = 0; j < seq; ++j) {
          const double p = stack[static_cast<std::size_t>(((b * heads + h) * seq + i) * seq + j)];
          for (index_t c = 0; c < dh; ++c) context[(b * seq + i) * d + h * dh + c] += p * v[(b * seq + j) * d + h * dh + c];
        }
  return {linear(context, rows, w.output), std::move(stack)};
}

// One layer; `stack` holds the previous layer's probability stack [B, H, N, N]
// on entry (ignored when the layer reuses nothing) and this layer's on exit.
template <class T>
matrix encoder_layer(const matrix& x, index_t batch, index_t seq,
                     const reuseformer::encoder_config& c,
                     const reuseformer::encoder_layer_weights<T>& w, const std::vector<int>& mask,
                     index_t reused, std::vector<double>& stack) {
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
    attention_result r = attention(in, batch, seq, c.num_attention_heads, w.attention, mask, c.causal, reused,
                                   stack, c.num_attention_heads);
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
               const std::vector<reuseformer::encoder_layer_weights<T>>& layers,
               const std::vector<int>& mask, std::vector<std::vector<double>>* stacks = nullptr) {
  std::vector<double> stack;
  for (std::size_t l = 0; l < layers.size(); ++l) {
    x = encoder_layer(x, batch, seq, c, layers[l], mask, c.reused_heads(static_cast<index_t>(l)), stack);
    if (stacks) stacks->push_back(stack);
  }
  return x;
}

}  // namespace reuseformer_test::reference
