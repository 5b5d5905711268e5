#pragma once
// Products with a triangular or symmetric result, for half the multiply-adds
// of a full product (SYRK-like):
//   multiply_lower:      C_lower = alpha * A Bᵀ  (a causal mask needs only this)
//   multiply_symmetric:  C = alpha * A Bᵀ, known to be symmetric (Q Qᵀ, Q P Qᵀ
//                        with symmetric P): the lower triangle, mirrored
// Both overwrite C (scores are never accumulated), so they take no update mode.
//
// The blocked product of gemm.hpp does the work in one column panel (op(B) is
// packed once, whole), skipping the register tiles right of the diagonal; a
// tile the diagonal crosses is computed whole (and, for the lower triangle,
// only its lower part stored), so the work is n(n+1)/2 * k multiply-adds plus
// what the tiles the diagonal crosses compute beyond it. When B is A itself
// (Q Qᵀ) on AVX-512 the strips of A are read from B's packed panel instead of
// being packed a second time, in tiles of 8 rows rather than 12, which also
// cuts that excess by a third (float) to a half (double), besides saving the
// copy of A (the effect on the score stage: bench/README.md).
// The mirror follows the computation 48 rows at a time, while those rows are
// still in cache, and writes whole cache lines; a separate pass over the
// finished n x n result (16 MiB per head at n = 2048) would read it back from
// memory.

#include <algorithm>

#include "reuseformer/gemm/gemm.hpp"
#include "reuseformer/simd/transpose.hpp"

namespace reuseformer::gemm {

namespace detail {
// A Aᵀ: B is the same view as A (Q Qᵀ), with no more rows, so the rows of A are
// all in op(B)'s packed panel.
template <class T>
[[nodiscard]] bool is_self_product(matrix<const T> a, matrix<const T> b) {
  return a.data == b.data && a.ld == b.ld && a.rows <= b.rows;
}

// The triangular products: op(B) = Bᵀ packed whole (one column panel, nc = n),
// A read from that panel for A Aᵀ.
template <class T, class Arch, class Done>
void lower_product(T alpha, matrix<const T> a, matrix<const T> b, matrix<T> c, T* scratch, part computed, Done&& done) {
  const unpacked_b<T, Arch> op_b{b, transpose::yes};
  if (is_self_product(a, b))
    blocked_product<T, Arch, a_source::b_panel>(alpha, a, op_b, c, scratch, update::overwrite, computed, c.cols, done);
  else
    blocked_product<T, Arch, a_source::packed>(alpha, a, op_b, c, scratch, update::overwrite, computed, c.cols, done);
}
}  // namespace detail

// Scratch elements for multiply_lower and multiply_symmetric on an [n, n]
// result with inner size k. Never decreases when n or k grows.
template <class T, class Arch = simd::default_arch>
[[nodiscard]] index_t lower_scratch_elements(index_t n, index_t k) {
  if (n == 0 || k == 0) return 0;
  return detail::panel_elements<T, Arch>(n, k, /*nc=*/n);
}

// C[i, j] = alpha * sum_c A[i, c] B[j, c] for j <= i; entries above the
// diagonal are left untouched.
// Shapes: A, B [n, k]; C [n, n]. Requires: scratch has lower_scratch_elements<T>(n', k')
// elements for some n' >= n, k' >= k, 64-byte aligned; C overlaps neither A nor B.
template <class T, class Arch = simd::default_arch>
void multiply_lower(T alpha, matrix<const T> a, matrix<const T> b, matrix<T> c, T* scratch) {
  detail::lower_product<T, Arch>(alpha, a, b, c, scratch, detail::part::lower, no_epilogue{});
}

// C = alpha * A Bᵀ where the caller knows A Bᵀ is symmetric: C[i, j] as in
// multiply_lower for j <= i, and C[j, i] = C[i, j] exactly. (Were A Bᵀ not
// symmetric, the upper triangle would still be the lower one's mirror.)
// Shapes and requirements as multiply_lower.
template <class T, class Arch = simd::default_arch>
void multiply_symmetric(T alpha, matrix<const T> a, matrix<const T> b, matrix<T> c, T* scratch) {
  // 48 rows: whole cache lines of float and double, and a multiple of every
  // strip height (tile::mr and tile::self_mr), so groups end where strips do.
  constexpr index_t group = 48;
  index_t mirrored = 0;  // rows [0, mirrored) are copied above the diagonal
  const auto mirror = [&](index_t row, index_t rows, index_t, index_t) {
    const index_t end = row + rows;
    if (end % group != 0 && end != c.rows) return;
    const index_t first = mirrored;
    // The group's rows left of its diagonal block become columns [first, end)
    // of the rows above; then the diagonal block mirrors onto itself.
    simd::transpose<T, Arch>(c.data + first * c.ld, c.ld, c.data + first, c.ld, end - first, first);
    simd::mirror_lower<T, Arch>(c.data + first * c.ld + first, end - first, c.ld);
    mirrored = end;
  };
  detail::lower_product<T, Arch>(alpha, a, b, c, scratch, detail::part::lower_tiles, mirror);
}

}  // namespace reuseformer::gemm
