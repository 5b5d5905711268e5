#pragma once
// A weight matrix stored as bfloat16, packed once in the layout the bf16
// products (bf16_gemm.hpp) read: the float packed layout (packed_weights.hpp:
// depth blocks of kc rows, strips of NR columns) with each depth block padded
// to an even depth and its strips holding pairs of depth steps per column
// (bf16_strip_index in bf16_micro_kernel.hpp), the operand order of vdpbf16ps.
// Half the bytes of the float layout.
//
// Built from float weights (each value rounded once, to nearest even) or from
// bfloat16 weights (a BF16 checkpoint: copied, no float detour). pack_bf16()
// writes the same layout into caller memory, for activations that several
// products read (an attention head's keys or values, attention/score_products.hpp).

#include <algorithm>
#include <cstddef>
#include <span>
#include <type_traits>

#include "reuseformer/core/aligned_array.hpp"
#include "reuseformer/core/bfloat16.hpp"
#include "reuseformer/core/tensor_view.hpp"
#include "reuseformer/gemm/blocking.hpp"
#include "reuseformer/gemm/bf16_micro_kernel.hpp"
#include "reuseformer/gemm/matrix.hpp"
#include "reuseformer/gemm/packing.hpp"
#include "reuseformer/simd/arch.hpp"
#include "reuseformer/simd/transpose.hpp"

namespace reuseformer::gemm {

// The packed bf16 op(B) [k, n], or a range of its columns starting at a
// multiple of NR: what the bf16 product reads.
template <class Arch = simd::default_arch>
struct bf16_packed_view {
  static constexpr index_t nr = detail::bf16_kernel<Arch>::nr;

  const bfloat16* data = nullptr;
  index_t strips = 0;       // NR-column strips of the whole packed matrix
  index_t first_strip = 0;  // where this view's columns start
  index_t n = 0, k = 0;     // op(B) is [k, n]
  index_t kc = 1;           // depth of the packed blocks (before padding)

  // Columns [first, first + count); requires first % NR == 0.
  [[nodiscard]] bf16_packed_view columns(index_t first, index_t count) const {
    return {data, strips, first_strip + first / nr, count, k, kc};
  }
  // The packed block at depth pc (a multiple of kc), from column jc (a multiple of NR).
  [[nodiscard]] const bfloat16* block(index_t pc, index_t jc) const {
    const index_t kpad = detail::round_up(std::min(kc, k - pc), 2);
    return data + pc / kc * strips * nr * detail::round_up(kc, 2) + (first_strip + jc / nr) * kpad * nr;
  }
};

namespace detail {
// bf16 elements of the packed op(B) [k, n] in depth blocks of kc: whole strips,
// each block padded to an even depth.
template <class Arch>
[[nodiscard]] index_t bf16_packed_size(index_t n, index_t k, index_t kc) {
  index_t depth = 0;
  for (index_t pc = 0; pc < k; pc += kc) depth += round_up(std::min(kc, k - pc), 2);
  return round_up(n, bf16_packed_view<Arch>::nr) * depth;
}

// One depth pair of a packed strip: out[2j] = round(r0[j]), out[2j + 1] =
// round(r1[j]) (zero when r1 is null: the padding of an odd depth) for
// j < cols, zero up to NR (the padding columns of the last strip).
template <index_t NR>
void pack_bf16_pair(const float* r0, const float* r1, index_t cols, bfloat16* out) {
  if (r1)
    for (index_t j = 0; j < cols; ++j) {
      out[2 * j] = to_bfloat16(r0[j]);
      out[2 * j + 1] = to_bfloat16(r1[j]);
    }
  else
    for (index_t j = 0; j < cols; ++j) {
      out[2 * j] = to_bfloat16(r0[j]);
      out[2 * j + 1] = bfloat16{};
    }
  std::fill(out + 2 * cols, out + 2 * NR, bfloat16{});
}
}  // namespace detail

// bf16 elements pack_bf16() writes for op(B) [k, n].
template <class Arch = simd::default_arch>
[[nodiscard]] index_t bf16_packed_elements(index_t n, index_t k) {
  return detail::bf16_packed_size<Arch>(n, k, detail::depth_block<bfloat16>(k));
}

// Packs all of op(B) [k, n] (b [n, k] for transpose::yes, [k, n] for no),
// rounded to bfloat16, into dst in the bf16_packed_weights layout: the depth
// pairs of a strip are rounded from two rows of op(B), read along the rows of
// b for transpose::no, or from rows transposed into a small float buffer
// (L1-resident) first for transpose::yes, so that both read memory in order.
// Requires: dst has bf16_packed_elements<Arch>(n, k) elements.
template <class Arch = simd::default_arch>
bf16_packed_view<Arch> pack_bf16(matrix<const float> b, transpose op, bfloat16* dst) {
  constexpr index_t nr = bf16_packed_view<Arch>::nr, depths = 64;  // rows of op(B) transposed at a time
  const bool transposed = op == transpose::yes;
  const index_t n = transposed ? b.rows : b.cols, k = transposed ? b.cols : b.rows, kc = detail::depth_block<bfloat16>(k);
  alignas(64) float rows[depths * nr];
  bfloat16* const start = dst;
  for (index_t pc = 0; pc < k; pc += kc) {
    const index_t kcur = std::min(kc, k - pc), kpad = detail::round_up(kcur, 2);
    for (index_t first = 0; first < n; first += nr, dst += kpad * nr) {
      const index_t cols = std::min(nr, n - first);
      for (index_t p0 = 0; p0 < kcur; p0 += depths) {
        const index_t count = std::min(depths, kcur - p0);
        const float* row = b.data + (pc + p0) * b.ld + first;  // op(B)[pc + p0, first]
        index_t ld = b.ld;
        if (transposed) {
          simd::transpose<float, Arch>(b.data + first * b.ld + pc + p0, b.ld, rows, nr, cols, count);
          row = rows;
          ld = nr;
        }
        for (index_t p = 0; p < count; p += 2, row += 2 * ld)
          detail::pack_bf16_pair<nr>(row, p + 1 < count ? row + ld : nullptr, cols, dst + (p0 + p) * nr);
      }
    }
  }
  return {start, ceil_div(n, nr), 0, n, k, kc};
}

template <class Arch = simd::default_arch>
class bf16_packed_weights {
 public:
  static constexpr index_t nr = bf16_packed_view<Arch>::nr;

  bf16_packed_weights() = default;

  // Packs the blocks `parts` (each [out_i, in], row-major with row stride ld),
  // stacked in order; S is float (rounded) or bfloat16 (copied). Throws
  // reuseformer::error when the memory cannot be had.
  template <class S>
    requires(std::is_same_v<S, float> || std::is_same_v<S, bfloat16>)
  bf16_packed_weights(std::span<const matrix<const S>> parts, index_t in)
      : k_(in), kc_(detail::depth_block<bfloat16>(in)) {
    for (const matrix<const S>& p : parts) n_ += p.rows;
    strips_ = ceil_div(n_, nr);
    data_ = reuseformer::detail::aligned_array<bfloat16>(detail::bf16_packed_size<Arch>(n_, k_, kc_),
                                                         "bf16 packed weights");
    bfloat16* out = data_.data();
    for (index_t pc = 0; pc < k_; pc += kc_) {
      const index_t kcur = std::min(kc_, k_ - pc), kpad = detail::round_up(kcur, 2);
      for (index_t s = 0; s < strips_; ++s, out += kpad * nr)
        for (index_t j = 0; j < nr; ++j) {
          const S* w = detail::stacked_row(parts, s * nr + j);
          for (index_t p = 0; p < kpad; ++p)
            out[detail::bf16_strip_index<nr>(p, j)] = w && p < kcur ? as_bfloat16(w[pc + p]) : bfloat16{};
        }
    }
  }

  [[nodiscard]] index_t out_features() const { return n_; }
  [[nodiscard]] index_t in_features() const { return k_; }
  // Bytes held, padding included (the last strip's columns, odd depth blocks).
  [[nodiscard]] std::size_t bytes() const { return static_cast<std::size_t>(data_.size()) * sizeof(bfloat16); }
  [[nodiscard]] bf16_packed_view<Arch> view() const { return {data_.data(), strips_, 0, n_, k_, kc_}; }

 private:
  static bfloat16 as_bfloat16(float x) { return to_bfloat16(x); }
  static bfloat16 as_bfloat16(bfloat16 x) { return x; }

  index_t n_ = 0, k_ = 0, strips_ = 0, kc_ = 1;
  reuseformer::detail::aligned_array<bfloat16> data_;
};

}  // namespace reuseformer::gemm
