#pragma once
// The query side of pairwise logits (docs/semantics.md §Symmetric and pairwise
// scores): L_h = (Q_h P_h) Q_hᵀ, so each fresh head's queries are transformed
// once, Q'_h = Q_h P_h, and the attention core then multiplies Q' by Qᵀ like any
// Q by Kᵀ. That is rows * F * dh^2 multiply-adds (rows * F * dh for diagonal P)
// instead of rows * d * F*dh for a key projection, and it leaves the core one
// product per head.

#include <algorithm>

#include "reuseformer/core/parallel.hpp"
#include "reuseformer/core/tensor_view.hpp"
#include "reuseformer/core/thread_scratch.hpp"
#include "reuseformer/gemm/gemm.hpp"
#include "reuseformer/simd/arch.hpp"

namespace reuseformer::attention {

namespace detail {
// Rows of Q one task transforms: a GEMM tall enough to run at full speed.
inline constexpr index_t pairwise_rows = 256;
}  // namespace detail

// Per-thread scratch for apply_pairwise_factors on `rows` rows and head size dh.
template <class T, class Arch = simd::default_arch>
[[nodiscard]] index_t pairwise_scratch_elements(index_t rows, index_t dh) {
  return gemm::scratch_elements<T, Arch>(std::min(rows, detail::pairwise_rows), dh, dh);
}

// out_h = q_h P_h for every head h < heads (head h: columns h*dh .. h*dh+dh-1).
// Shapes: q, out [rows, heads*dh]; factors [heads, dh, dh] row-major.
// With `diagonal`, only the diagonal of each P_h is read (the caller has checked
// that the rest is zero) and the product is a column scaling.
// Requires: scratch.stride >= pairwise_scratch_elements<T>(rows, dh), slices
// 64-byte aligned; out does not overlap q.
template <class T, class Arch = simd::default_arch>
void apply_pairwise_factors(gemm::matrix<const T> q, const T* factors, index_t heads, index_t dh, bool diagonal,
                            gemm::matrix<T> out, const thread_scratch<T>& scratch) {
  const index_t chunks = ceil_div(q.rows, detail::pairwise_rows);
  parallel_for(chunks * heads, scratch.threads, [&](index_t task, int thread) {
    const index_t h = task % heads, first = task / heads * detail::pairwise_rows;
    const index_t rows = std::min(detail::pairwise_rows, q.rows - first);
    const T* p = factors + h * dh * dh;
    const gemm::matrix<const T> q_h = q.block(first, rows, h * dh, dh);
    const gemm::matrix<T> out_h = out.block(first, rows, h * dh, dh);
    if (!diagonal) {
      gemm::multiply_add<T, Arch>(T(1), q_h, gemm::matrix<const T>{p, dh, dh, dh}, gemm::transpose::no, out_h,
                                  gemm::update::overwrite, scratch.slice(thread));
      return;
    }
    for (index_t i = 0; i < rows; ++i)
      for (index_t c = 0; c < dh; ++c) out_h.data[i * out_h.ld + c] = q_h.data[i * q_h.ld + c] * p[c * dh + c];
  });
}

}  // namespace reuseformer::attention
