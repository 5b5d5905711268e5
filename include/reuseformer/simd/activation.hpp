#pragma once
// Bias add fused with an elementwise activation, over the rows of a matrix:
//   x[i, j] = act(x[i, j] + bias[j])
// Fusing saves one pass over the [rows, cols] activation (for a BERT FFN that is
// rows x 3072 values) compared with a bias pass followed by an activation pass.
// Activations are small policy types whose apply() works on a scalar and on an
// xsimd batch alike, so the reference path and the vector path share the formula.

#include <cmath>
#include <numbers>

#include "reuseformer/core/tensor_view.hpp"
#include "reuseformer/simd/arch.hpp"

namespace reuseformer::simd {

// act(x) = x: a plain bias add.
struct identity {
  template <class V>
  static V apply(const V& x) {
    return x;
  }
};

// act(x) = max(x, 0).
struct relu {
  template <class V>
  static V apply(const V& x) {
    using std::max;
    using xsimd::max;
    return max(x, V(0));
  }
};

// GELU with the exact erf: x/2 * (1 + erf(x / sqrt(2))). Hugging Face "gelu",
// torch.nn.functional.gelu(approximate='none').
struct gelu_erf {
  template <class V>
  static V apply(const V& x) {
    using std::erf;
    using xsimd::erf;
    return V(0.5) * x * (V(1) + erf(x * V(std::numbers::sqrt2 / 2)));
  }
};

// GELU, tanh approximation: x/2 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))).
// Hugging Face "gelu_new", torch.nn.functional.gelu(approximate='tanh').
struct gelu_tanh {
  template <class V>
  static V apply(const V& x) {
    using std::tanh;
    using xsimd::tanh;
    const V inner = V(std::numbers::sqrt2 * std::numbers::inv_sqrtpi) * (x + V(0.044715) * x * x * x);
    return V(0.5) * x * (V(1) + tanh(inner));
  }
};

namespace reference {

// Requires: x is [rows, cols] with row stride ld >= cols; bias has cols elements.
template <class Act, class T>
void bias_activation(T* x, index_t rows, index_t cols, index_t ld, const T* bias) {
  for (index_t i = 0; i < rows; ++i)
    for (index_t j = 0; j < cols; ++j) x[i * ld + j] = Act::apply(x[i * ld + j] + bias[j]);
}

}  // namespace reference

// Same contract as reference::bias_activation, vectorised for Arch.
template <class Act, class Arch = default_arch, class T>
void bias_activation(T* x, index_t rows, index_t cols, index_t ld, const T* bias) {
  if constexpr (!is_vector_arch<Arch>) {
    reference::bias_activation<Act>(x, rows, cols, ld, bias);
  } else {
    using batch = xsimd::batch<T, Arch>;
    constexpr index_t width = batch::size;
    const index_t body = cols - cols % width;
    for (index_t i = 0; i < rows; ++i) {
      T* row = x + i * ld;
      for (index_t j = 0; j < body; j += width)
        Act::apply(batch::load_unaligned(row + j) + batch::load_unaligned(bias + j))
            .store_unaligned(row + j);
      for (index_t j = body; j < cols; ++j) row[j] = Act::apply(row[j] + bias[j]);
    }
  }
}

}  // namespace reuseformer::simd
