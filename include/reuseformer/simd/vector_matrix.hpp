#pragma once
// A row vector times a matrix, y = xᵀ M:
//   y_c = sum_{i < rows} x_i · M[i, c]      for c < cols, M row-major with row stride ld.
// Decoding forms one query's attention with it twice per head: its logits
// against keys stored transposed (x = q, M = Kᵀ [dh, n]) and its context from
// the values (x = probabilities, M = V [n, dh]). Both read M once, row by row,
// with no packing: M is a cache read for one vector, so a GEMM's copy of it
// into panels would double the memory traffic.

#include "reuseformer/core/tensor_view.hpp"
#include "reuseformer/simd/arch.hpp"

namespace reuseformer::simd {

namespace reference {

// Requires: y does not overlap x or M.
template <class T>
void vector_matrix(const T* x, index_t rows, const T* m, index_t cols, index_t ld, T* y) {
  for (index_t c = 0; c < cols; ++c) y[c] = T(0);
  for (index_t i = 0; i < rows; ++i)
    for (index_t c = 0; c < cols; ++c) y[c] += x[i] * m[i * ld + c];
}

}  // namespace reference

// Same contract as reference::vector_matrix, vectorised for Arch: columns are
// taken four vectors at a time, their sums held in registers across all rows,
// so each element of M is loaded once and y is written once.
template <class T, class Arch = default_arch>
void vector_matrix(const T* x, index_t rows, const T* m, index_t cols, index_t ld, T* y) {
  if constexpr (!is_vector_arch<Arch>) {
    reference::vector_matrix(x, rows, m, cols, ld, y);
  } else {
    using batch = xsimd::batch<T, Arch>;
    constexpr index_t width = batch::size;
    index_t c = 0;
    for (; c + 4 * width <= cols; c += 4 * width) {
      batch s0(T(0)), s1(T(0)), s2(T(0)), s3(T(0));
      for (index_t i = 0; i < rows; ++i) {
        const batch xi(x[i]);
        const T* row = m + i * ld + c;
        s0 = xsimd::fma(xi, batch::load_unaligned(row), s0);
        s1 = xsimd::fma(xi, batch::load_unaligned(row + width), s1);
        s2 = xsimd::fma(xi, batch::load_unaligned(row + 2 * width), s2);
        s3 = xsimd::fma(xi, batch::load_unaligned(row + 3 * width), s3);
      }
      s0.store_unaligned(y + c);
      s1.store_unaligned(y + c + width);
      s2.store_unaligned(y + c + 2 * width);
      s3.store_unaligned(y + c + 3 * width);
    }
    for (; c + width <= cols; c += width) {
      batch s(T(0));
      for (index_t i = 0; i < rows; ++i) s = xsimd::fma(batch(x[i]), batch::load_unaligned(m + i * ld + c), s);
      s.store_unaligned(y + c);
    }
    for (; c < cols; ++c) {
      T s = 0;
      for (index_t i = 0; i < rows; ++i) s += x[i] * m[i * ld + c];
      y[c] = s;
    }
  }
}

}  // namespace reuseformer::simd
