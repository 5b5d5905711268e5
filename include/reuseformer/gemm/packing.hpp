#pragma once
// Packing for the micro-kernel (micro_kernel.hpp): copies of a block of A and of
// op(B) laid out in the order the kernel reads them, so that its loads are
// sequential, aligned and free of cache-set conflicts whatever the operands'
// strides (a [N, 3072] activation has rows 12 KiB apart: one cache set).

#include <algorithm>
#include <span>

#include "reuseformer/core/tensor_view.hpp"
#include "reuseformer/gemm/matrix.hpp"
#include "reuseformer/simd/transpose.hpp"

namespace reuseformer::gemm::detail {

// dst[p * MR + i] = A[i, p] for i < a.rows, p < a.cols, and 0 for the padding
// rows a.rows <= i < MR.
template <class T, class Arch, index_t MR>
void pack_a(matrix<const T> a, T* dst) {
  simd::transpose<T, Arch>(a.data, a.ld, dst, MR, a.rows, a.cols);
  if (a.rows < MR)
    for (index_t p = 0; p < a.cols; ++p) std::fill(dst + p * MR + a.rows, dst + (p + 1) * MR, T(0));
}

// op(B) [kc, n] as strips of NR columns: strip s holds dst[s*kc*NR + p*NR + j] =
// op(B)[p, s*NR + j], zero for the padding columns of the last strip.
// b is op(B)'s storage: [n, kc] for transpose::yes, [kc, n] for transpose::no.
template <class T, class Arch, index_t NR>
void pack_b(matrix<const T> b, transpose op, T* dst) {
  const index_t kc = op == transpose::yes ? b.cols : b.rows, n = op == transpose::yes ? b.rows : b.cols;
  for (index_t s = 0; s * NR < n; ++s, dst += kc * NR) {
    const index_t first = s * NR, cols = std::min(NR, n - first);
    if (op == transpose::yes) {
      simd::transpose<T, Arch>(b.data + first * b.ld, b.ld, dst, NR, cols, kc);
      if (cols < NR)
        for (index_t p = 0; p < kc; ++p) std::fill(dst + p * NR + cols, dst + (p + 1) * NR, T(0));
    } else {
      for (index_t p = 0; p < kc; ++p) {
        const T* const row = b.data + p * b.ld + first;
        std::copy(row, row + cols, dst + p * NR);
        std::fill(dst + p * NR + cols, dst + (p + 1) * NR, T(0));
      }
    }
  }
}

// Row j of the blocks `parts` stacked along their rows (a weight's query | key
// | value blocks), or null past their last row (a packed strip's padding).
template <class T>
[[nodiscard]] const T* stacked_row(std::span<const matrix<const T>> parts, index_t j) {
  for (const matrix<const T>& p : parts) {
    if (j < p.rows) return p.data + j * p.ld;
    j -= p.rows;
  }
  return nullptr;
}

}  // namespace reuseformer::gemm::detail
