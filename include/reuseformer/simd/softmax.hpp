#pragma once
// Row softmax with scaling and an additive mask, numerically stable.
//
//   y_j = exp(z_j - max_k z_k) / sum_k exp(z_k - max_k z_k),  z_j = scale * x_j + mask_j
// for j < active; y_j = 0 for active <= j < n. `active` lets a causal row ignore
// the keys after it without a materialised mask.
// A row whose every z_j is -inf (all keys masked) becomes all zeros, never NaN.

#include <algorithm>
#include <cmath>
#include <limits>

#include "reuseformer/core/tensor_view.hpp"
#include "reuseformer/simd/arch.hpp"

namespace reuseformer::simd {

namespace reference {

// Requires: 0 <= active <= n; x has n elements; mask is null or has `active`.
template <class T>
void softmax(T* x, index_t n, index_t active, T scale, const T* mask) {
  T top = -std::numeric_limits<T>::infinity();
  for (index_t j = 0; j < active; ++j) {
    x[j] = x[j] * scale + (mask ? mask[j] : T(0));
    top = std::max(top, x[j]);
  }
  if (top == -std::numeric_limits<T>::infinity()) active = 0;  // fully masked row
  T sum = 0;
  for (index_t j = 0; j < active; ++j) {
    x[j] = std::exp(x[j] - top);
    sum += x[j];
  }
  const T inverse = T(1) / sum;
  for (index_t j = 0; j < active; ++j) x[j] *= inverse;
  std::fill(x + active, x + n, T(0));
}

}  // namespace reference

// Same contract as reference::softmax, vectorised for Arch.
template <class T, class Arch = default_arch>
void softmax(T* x, index_t n, index_t active, T scale, const T* mask) {
  if constexpr (!is_vector_arch<Arch>) {
    reference::softmax(x, n, active, scale, mask);
  } else {
    using batch = xsimd::batch<T, Arch>;
    constexpr index_t width = batch::size;
    const index_t body = active - active % width;
    const batch vscale(scale);

    // z = scale*x + mask is formed where it is used, in both passes, so that
    // the first pass only reads the row.
    const auto z = [&](index_t j) {
      const batch scaled = batch::load_unaligned(x + j) * vscale;
      return mask ? scaled + batch::load_unaligned(mask + j) : scaled;
    };
    const auto z_scalar = [&](index_t j) { return x[j] * scale + (mask ? mask[j] : T(0)); };

    // Pass 1: the row maximum.
    batch vtop(-std::numeric_limits<T>::infinity());
    for (index_t j = 0; j < body; j += width) vtop = xsimd::max(vtop, z(j));
    alignas(64) T lanes[width];
    vtop.store_aligned(lanes);
    T top = *std::max_element(lanes, lanes + width);
    for (index_t j = body; j < active; ++j) top = std::max(top, z_scalar(j));
    if (top == -std::numeric_limits<T>::infinity()) {  // fully masked row
      std::fill(x, x + n, T(0));
      return;
    }

    // Pass 2: exponentials and their sum.
    const batch vmax(top);
    batch vsum(T(0));
    for (index_t j = 0; j < body; j += width) {
      const batch e = xsimd::exp(z(j) - vmax);
      e.store_unaligned(x + j);
      vsum += e;
    }
    T sum = xsimd::hadd(vsum);
    for (index_t j = body; j < active; ++j) {
      x[j] = std::exp(z_scalar(j) - top);
      sum += x[j];
    }

    // Pass 3: normalise; zero the inactive tail.
    const T inverse = T(1) / sum;
    const batch vinverse(inverse);
    for (index_t j = 0; j < body; j += width) (batch::load_unaligned(x + j) * vinverse).store_unaligned(x + j);
    for (index_t j = body; j < active; ++j) x[j] *= inverse;
    std::fill(x + active, x + n, T(0));
  }
}

}  // namespace reuseformer::simd
