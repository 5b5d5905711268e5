#pragma once
// A weight matrix stored as bfloat16, packed once in the layout the bf16
// products (bf16_gemm.hpp) read: the float packed layout (packed_weights.hpp:
// depth blocks of kc rows, strips of NR columns) with each depth block padded
// to an even depth and its strips holding pairs of depth steps per column
// (bf16_strip_index in bf16_micro_kernel.hpp), the operand order of vdpbf16ps.
// Half the bytes of the float layout.
//
// Built from float weights (each value rounded once, to nearest even) or from
// bfloat16 weights (a BF16 checkpoint: copied, no float detour).

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
    index_t depth = 0;  // padded depth of all blocks
    for (index_t pc = 0; pc < k_; pc += kc_) depth += detail::round_up(std::min(kc_, k_ - pc), 2);
    data_ = reuseformer::detail::aligned_array<bfloat16>(strips_ * nr * depth, "bf16 packed weights");
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
