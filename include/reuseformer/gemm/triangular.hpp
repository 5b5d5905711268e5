#pragma once
// Products only needed on and below the diagonal:
//   C_lower = alpha * A Bᵀ       (SYRK-like: half the multiply-adds of a full product)
// Symmetric attention logits (Q Qᵀ, Q P Qᵀ with symmetric P) complete it with
// simd::mirror_lower; a causal mask needs only the triangle.
//
// Eigen's triangular-product kernel does the work, with packing buffers from the
// caller as in gemm.hpp: blocks left of the diagonal go through the ordinary
// micro-kernel, and each diagonal micro-block is computed whole into a small stack
// array (a fixed-size Eigen matrix, not a heap allocation) and only its lower part
// added, so the work is n(n+1)/2 * k multiply-adds plus one micro-block's worth
// (<= 48 x 48 on AVX-512) per diagonal block.

#include <algorithm>

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"  // GCC bug 105593, see gemm.hpp
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include "reuseformer/gemm/gemm.hpp"

namespace reuseformer::gemm {

namespace detail {
// Eigen packs kc x mc of A and all n columns of Bᵀ (kc x n) at once.
template <class T>
[[nodiscard]] blocking_sizes lower_blocking(index_t n, index_t k) {
  const blocking_sizes h = eigen_heuristic<T>(n, n, k), cap = caps_for<T>(n, n, k);
  return {std::min(h.kc, cap.kc), std::min(h.mc, cap.mc), n};
}
}  // namespace detail

// Scratch elements for multiply_add_lower on an [n, n] result with inner size k.
// Never decreases when n or k grows.
template <class T>
[[nodiscard]] index_t lower_scratch_elements(index_t n, index_t k) {
  if (n == 0 || k == 0) return 0;
  const detail::blocking_sizes cap = detail::caps_for<T>(n, n, k);
  return detail::blocking_sizes{cap.kc, cap.mc, n}.template elements<T>();
}

// C[i, j] = alpha * sum_c A[i, c] B[j, c] for j <= i; entries above the
// diagonal are left untouched.
// Shapes: A, B [n, k]; C [n, n]. Requires: scratch has lower_scratch_elements<T>(n', k')
// elements for some n' >= n, k' >= k, 64-byte aligned; C overlaps neither A nor B.
template <class T>
void multiply_add_lower(T alpha, matrix<const T> a, matrix<const T> b, matrix<T> c, T* scratch) {
  const index_t n = c.rows, k = a.cols;
  eigen_assert(c.cols == n && a.rows == n && b.rows == n && b.cols == k);
  for (index_t i = 0; i < n; ++i) std::fill(c.data + i * c.ld, c.data + i * c.ld + i + 1, T(0));
  if (n == 0 || k == 0) return;
  detail::external_blocking<T> blocking(detail::lower_blocking<T>(n, k), scratch);
  // Lhs A [n, k] row-major, rhs Bᵀ [k, n] column-major (B row-major), result
  // row-major lower; Eigen turns it into the column-major upper product B Aᵀ.
  Eigen::internal::general_matrix_matrix_triangular_product<
      Eigen::Index, T, Eigen::RowMajor, false, T, Eigen::ColMajor, false, Eigen::RowMajor, 1,
      Eigen::Lower>::run(n, k, a.data, a.ld, b.data, b.ld, c.data, 1, c.ld, alpha, blocking);
}

}  // namespace reuseformer::gemm

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
