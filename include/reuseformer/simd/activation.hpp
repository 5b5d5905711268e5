#pragma once
// Bias add fused with an elementwise activation, over the rows of a matrix:
//   x[i, j] = act(x[i, j] + bias[j])
// Fusing saves one pass over the [rows, cols] activation (for a BERT FFN that is
// rows x 3072 values) compared with a bias pass followed by an activation pass.
// Activations are small policy types whose apply() works on a scalar and on an
// xsimd batch alike, so the reference path and the vector path share the formula.

#include <cmath>
#include <numbers>
#include <type_traits>

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

// erf on a vector: Abramowitz and Stegun 7.1.26, erf(|x|) = 1 - t P(t) exp(-x^2)
// with t = 1 / (1 + p |x|), |error| <= 1.5e-7 (about 2 float ulp of 1), the
// formula PyTorch's own vectorised CPU erf uses. One exp and one division
// instead of the two rational branches a general erf evaluates and selects
// between, in the FFN's bias + GELU epilogue over rows x d_ff values (the gain
// measured: bench/README.md).
template <class V>
V erf_vector(const V& x) {
  using T = typename V::value_type;
  const V a = xsimd::abs(x);
  const V t = V(T(1)) / xsimd::fma(V(T(0.3275911)), a, V(T(1)));
  V poly = xsimd::fma(V(T(1.061405429)), t, V(T(-1.453152027)));
  poly = xsimd::fma(poly, t, V(T(1.421413741)));
  poly = xsimd::fma(poly, t, V(T(-0.284496736)));
  poly = xsimd::fma(poly, t, V(T(0.254829592)));
  const V y = xsimd::fnma(poly * t, xsimd::exp(-(a * a)), V(T(1)));
  return xsimd::copysign(y, x);
}

// GELU with erf: x/2 * (1 + erf(x / sqrt(2))). Hugging Face "gelu",
// torch.nn.functional.gelu(approximate='none'). Scalars use std::erf (the
// reference), vectors erf_vector (float); double vectors keep xsimd's erf,
// whose 1e-16 the 1.5e-7 approximation would not match.
struct gelu_erf {
  template <class V>
  static V apply(const V& x) {
    const V half_x = V(0.5) * x, scaled = x * V(std::numbers::sqrt2 / 2);
    if constexpr (std::is_floating_point_v<V>) {
      return half_x * (V(1) + std::erf(scaled));
    } else if constexpr (std::is_same_v<typename V::value_type, float>) {
      return half_x * (V(1) + erf_vector(scaled));
    } else {
      return half_x * (V(1) + xsimd::erf(scaled));
    }
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
template <class Act, class T, class Arch = default_arch>
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
        Act::apply(batch::load_unaligned(row + j) + batch::load_unaligned(bias + j)).store_unaligned(row + j);
      for (index_t j = body; j < cols; ++j) row[j] = Act::apply(row[j] + bias[j]);
    }
  }
}

}  // namespace reuseformer::simd
