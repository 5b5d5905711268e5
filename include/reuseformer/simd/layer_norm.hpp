#pragma once
// Layer normalisation of one row, as torch.nn.LayerNorm over the last dimension:
//   y_j = (x_j - mean) / sqrt(var + eps) * gamma_j + beta_j,  var = mean((x - mean)^2)
// (biased variance). Two passes over x (mean, then squared deviations) instead of
// E[x^2] - E[x]^2, which cancels catastrophically for rows with a large mean.
// The mean is summed over x - x[0] ("shifted data"): for a row of 768 floats
// near 1000 a plain running sum reaches ~8e5, where float spacing is 0.06, and
// the mean is off by ~4e-4 standard deviations; shifted, the sum stays small.

#include <cmath>

#include "reuseformer/core/tensor_view.hpp"
#include "reuseformer/simd/arch.hpp"

namespace reuseformer::simd {

namespace reference {

// Requires: n >= 1; x, y, gamma, beta have n elements; y may alias x.
template <class T>
void layer_norm(const T* x, T* y, index_t n, const T* gamma, const T* beta, T eps) {
  const T shift = x[0];
  T sum = 0;
  for (index_t j = 0; j < n; ++j) sum += x[j] - shift;
  const T mean = shift + sum / T(n);
  T squares = 0;
  for (index_t j = 0; j < n; ++j) squares += (x[j] - mean) * (x[j] - mean);
  const T rstd = T(1) / std::sqrt(squares / T(n) + eps);
  for (index_t j = 0; j < n; ++j) y[j] = (x[j] - mean) * rstd * gamma[j] + beta[j];
}

}  // namespace reference

// Same contract as reference::layer_norm, vectorised for Arch.
template <class T, class Arch = default_arch>
void layer_norm(const T* x, T* y, index_t n, const T* gamma, const T* beta, T eps) {
  if constexpr (!is_vector_arch<Arch>) {
    reference::layer_norm(x, y, n, gamma, beta, eps);
  } else {
    using batch = xsimd::batch<T, Arch>;
    constexpr index_t width = batch::size;
    const index_t body = n - n % width;

    const T shift = x[0];
    const batch vshift(shift);
    batch vsum(T(0));
    for (index_t j = 0; j < body; j += width) vsum += batch::load_unaligned(x + j) - vshift;
    T sum = xsimd::hadd(vsum);
    for (index_t j = body; j < n; ++j) sum += x[j] - shift;
    const T mean = shift + sum / T(n);

    const batch vmean(mean);
    batch vsquares(T(0));
    for (index_t j = 0; j < body; j += width) {
      const batch d = batch::load_unaligned(x + j) - vmean;
      vsquares = xsimd::fma(d, d, vsquares);
    }
    T squares = xsimd::hadd(vsquares);
    for (index_t j = body; j < n; ++j) squares += (x[j] - mean) * (x[j] - mean);
    const T rstd = T(1) / std::sqrt(squares / T(n) + eps);

    const batch vrstd(rstd);
    for (index_t j = 0; j < body; j += width) {
      const batch normed = (batch::load_unaligned(x + j) - vmean) * vrstd;
      xsimd::fma(normed, batch::load_unaligned(gamma + j), batch::load_unaligned(beta + j)).store_unaligned(y + j);
    }
    for (index_t j = body; j < n; ++j) y[j] = (x[j] - mean) * rstd * gamma[j] + beta[j];
  }
}

}  // namespace reuseformer::simd
