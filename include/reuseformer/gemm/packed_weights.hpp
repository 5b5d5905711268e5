#pragma once
// A weight matrix packed once, when a layer is built, in the layout in which the
// blocked product (gemm.hpp) reads op(B): no forward pass packs a weight again.
//
// W is one or more PyTorch-layout blocks [out_i, in] stacked along their
// outputs (query, key and value become one product); op(B) = Wᵀ is [in, n],
// n = sum out_i. Layout: depth blocks of kc rows (kc as the product picks it
// for depth `in`), and within each, strips of NR columns stored as
// [kc][NR] (zero-padded past column n). A column panel of the product is then a
// run of consecutive strips of one depth block, wherever it starts (at a
// multiple of NR): the same bytes pack_b would have produced, so a prepacked
// product is bit for bit the product that packs.

#include <algorithm>
#include <cstddef>
#include <span>

#include "reuseformer/core/aligned_array.hpp"
#include "reuseformer/core/tensor_view.hpp"
#include "reuseformer/gemm/blocking.hpp"
#include "reuseformer/gemm/matrix.hpp"
#include "reuseformer/gemm/micro_kernel.hpp"
#include "reuseformer/gemm/packing.hpp"
#include "reuseformer/simd/arch.hpp"

namespace reuseformer::gemm {

// op(B) already packed: the view blocked_product reads, for the whole weight or
// a range of its columns starting at a multiple of NR. A product reading it has
// inner size k (its depth blocks are the packed ones).
template <class T, class Arch = simd::default_arch>
struct packed_view {
  static constexpr index_t nr = detail::tile<T, Arch>::nr;

  const T* data = nullptr;
  index_t strips = 0;       // NR-column strips of the whole packed matrix
  index_t first_strip = 0;  // where this view's columns start
  index_t n = 0, k = 0;     // op(B) is [k, n]
  index_t kc = 0;           // depth of the packed blocks

  // Columns [first, first + count); requires first % NR == 0.
  [[nodiscard]] packed_view columns(index_t first, index_t count) const {
    return {data, strips, first_strip + first / nr, count, k, kc};
  }
  // The packed [kcur, ncur] block at depth pc (a multiple of kc), column jc.
  [[nodiscard]] const T* panel(index_t pc, index_t kcur, index_t jc, index_t, T*) const {
    return data + pc * strips * nr + (first_strip + jc / nr) * kcur * nr;
  }
  static constexpr bool needs_buffer = false;
};

// Elements pack() writes for op(B) [k, n]: k rows of n columns rounded up to
// whole strips.
template <class T, class Arch = simd::default_arch>
[[nodiscard]] index_t packed_elements(index_t n, index_t k) {
  return detail::round_up(n, packed_view<T, Arch>::nr) * k;
}

// Packs all of op(B) [k, n] (b as for multiply_add: [n, k] for transpose::yes,
// [k, n] for no) into dst in the packed_weights layout, for an operand that
// several products read (an attention head's keys or values, once per query
// block): each product then reads it in place instead of packing it again.
// Requires: dst has packed_elements<T, Arch>(n, k) elements, 64-byte aligned.
template <class T, class Arch = simd::default_arch>
packed_view<T, Arch> pack(matrix<const T> b, transpose op, T* dst) {
  constexpr index_t nr = packed_view<T, Arch>::nr;
  const index_t n = op == transpose::yes ? b.rows : b.cols, k = op == transpose::yes ? b.cols : b.rows;
  const index_t kc = detail::depth_block<T>(k), strips = ceil_div(n, nr);
  for (index_t pc = 0; pc < k; pc += kc) {
    const index_t kcur = std::min(kc, k - pc);
    detail::pack_b<T, Arch, nr>(op == transpose::yes ? b.block(0, n, pc, kcur) : b.block(pc, kcur, 0, n), op,
                                dst + pc * strips * nr);
  }
  return {dst, strips, 0, n, k, kc};
}

// Owns a packed weight. Cheap to move; a copy copies the packed values (the
// layers holding one keep value semantics: aligned_array's).
template <class T, class Arch = simd::default_arch>
class packed_weights {
 public:
  static constexpr index_t nr = detail::tile<T, Arch>::nr;

  packed_weights() = default;

  // Packs the blocks `parts` (each [out_i, in], row-major with row stride ld),
  // stacked in order. Throws reuseformer::error when the memory cannot be had.
  packed_weights(std::span<const matrix<const T>> parts, index_t in) : k_(in) {
    for (const matrix<const T>& p : parts) n_ += p.rows;
    strips_ = ceil_div(n_, nr);
    kc_ = detail::depth_block<T>(k_);
    data_ = reuseformer::detail::aligned_array<T>(strips_ * nr * k_, "packed weights");
    T* out = data_.data();
    for (index_t pc = 0; pc < k_; pc += kc_) {
      const index_t kcur = std::min(kc_, k_ - pc);
      for (index_t s = 0; s < strips_; ++s)
        for (index_t j = 0; j < nr; ++j) {
          const T* w = detail::stacked_row(parts, s * nr + j);  // column j of op(B)
          for (index_t p = 0; p < kcur; ++p) out[(s * kcur + p) * nr + j] = w ? w[pc + p] : T(0);
        }
      out += strips_ * kcur * nr;
    }
  }

  [[nodiscard]] index_t out_features() const { return n_; }
  [[nodiscard]] index_t in_features() const { return k_; }
  // Bytes held, padding of the last strip included.
  [[nodiscard]] std::size_t bytes() const { return static_cast<std::size_t>(strips_ * nr * k_) * sizeof(T); }
  [[nodiscard]] packed_view<T, Arch> view() const { return {data_.data(), strips_, 0, n_, k_, kc_}; }

 private:
  index_t n_ = 0, k_ = 0, strips_ = 0, kc_ = 1;
  reuseformer::detail::aligned_array<T> data_;
};

}  // namespace reuseformer::gemm
