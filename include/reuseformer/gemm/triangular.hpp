#pragma once
// Products only needed on and below the diagonal:
//   C_lower = alpha * A Bᵀ       (SYRK-like: half the multiply-adds of a full product)
// Symmetric attention logits (Q Qᵀ, Q P Qᵀ with symmetric P) complete it with
// simd::mirror_lower; a causal mask needs only the triangle.
//
// The blocked product of gemm.hpp does the work, skipping the register tiles
// right of the diagonal; a tile the diagonal crosses is computed whole and only
// its lower part stored, so the work is n(n+1)/2 * k multiply-adds plus about
// half an MR x NR tile (12 x 32 on AVX-512) per MR rows.

#include "reuseformer/gemm/gemm.hpp"

namespace reuseformer::gemm {

// Scratch elements for multiply_add_lower on an [n, n] result with inner size k.
// Never decreases when n or k grows.
template <class T, class Arch = simd::default_arch>
[[nodiscard]] index_t lower_scratch_elements(index_t n, index_t k) {
  if (n == 0 || k == 0) return 0;
  return detail::panel_elements<T, Arch>(n, k);
}

// C[i, j] = alpha * sum_c A[i, c] B[j, c] for j <= i; entries above the
// diagonal are left untouched.
// Shapes: A, B [n, k]; C [n, n]. Requires: scratch has lower_scratch_elements<T>(n', k')
// elements for some n' >= n, k' >= k, 64-byte aligned; C overlaps neither A nor B.
template <class T, class Arch = simd::default_arch>
void multiply_add_lower(T alpha, matrix<const T> a, matrix<const T> b, matrix<T> c, T* scratch) {
  if (a.cols == 0)
    for (index_t i = 0; i < c.rows; ++i) std::fill(c.data + i * c.ld, c.data + i * c.ld + i + 1, T(0));
  detail::blocked_product<T, Arch>(alpha, a, b, transpose::yes, c, scratch, update::overwrite, /*lower_only=*/true);
}

}  // namespace reuseformer::gemm
