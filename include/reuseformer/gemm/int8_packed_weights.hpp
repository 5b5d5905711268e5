#pragma once
// A weight matrix quantized to int8 once and packed in the layout the int8
// products (int8_gemm.hpp) read: strips of NR columns, each its columns'
// scales and sums and then the values in groups of four depth steps per
// column (int8_micro_kernel.hpp), over the whole depth in one block, so that
// each output is one exact 32-bit sum dequantized once. About a quarter of the
// float layout's bytes (plus 8 bytes per column).
//
// Built from float weights (quantized symmetrically per output column:
// int8_quantization.hpp), or from int8 values with their column scales (a
// checkpoint's int8 weights, packed as they are).

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "reuseformer/core/aligned_array.hpp"
#include "reuseformer/core/error.hpp"
#include "reuseformer/core/tensor_view.hpp"
#include "reuseformer/gemm/blocking.hpp"
#include "reuseformer/gemm/int8_micro_kernel.hpp"
#include "reuseformer/gemm/int8_quantization.hpp"
#include "reuseformer/gemm/matrix.hpp"
#include "reuseformer/gemm/packing.hpp"
#include "reuseformer/simd/arch.hpp"

namespace reuseformer::gemm {

// The packed int8 op(B) [k, n], or a range of its columns starting at a
// multiple of NR: what the int8 product reads. One depth block (kc = k).
template <class Arch = simd::default_arch>
struct int8_packed_view {
  using kernel = detail::int8_kernel<Arch>;
  static constexpr index_t nr = kernel::nr;

  const std::int8_t* data = nullptr;
  index_t strips = 0;       // NR-column strips of the whole packed matrix
  index_t first_strip = 0;  // where this view's columns start
  index_t n = 0, k = 0;     // op(B) is [k, n]
  index_t kc = 1;           // depth of the one block: k (1 for k = 0)

  // Columns [first, first + count); requires first % NR == 0.
  [[nodiscard]] int8_packed_view columns(index_t first, index_t count) const {
    return {data, strips, first_strip + first / nr, count, k, kc};
  }
  // The packed block at depth 0, from column jc (a multiple of NR).
  [[nodiscard]] const std::int8_t* block(index_t /*pc*/, index_t jc) const {
    return data + (first_strip + jc / nr) * kernel::strip_bytes(detail::round_up(k, kernel::depth_step));
  }
};

template <class Arch = simd::default_arch>
class int8_packed_weights {
  using kernel = detail::int8_kernel<Arch>;

 public:
  static constexpr index_t nr = kernel::nr;

  int8_packed_weights() = default;

  // Quantizes and packs the blocks `parts` (each [out_i, in], row-major with
  // row stride ld), stacked in order. Throws reuseformer::error when in
  // exceeds detail::int8_max_depth or the memory cannot be had.
  int8_packed_weights(std::span<const matrix<const float>> parts, index_t in) {
    pack(parts, in, [&](index_t row, std::int8_t* q) {
      const float* w = detail::stacked_row(parts, row);
      float max_abs = 0;
      for (index_t p = 0; w && p < k_; ++p) max_abs = std::max(max_abs, std::abs(w[p]));
      const float scale = column_scale(max_abs);
      for (index_t p = 0; p < k_; ++p) q[p] = w ? quantize_weight(w[p], scale) : std::int8_t{0};
      return scale;
    });
  }

  // Packs the int8 blocks `parts` (each values [out_i, in] with out_i scales),
  // stacked in order, as they are: the same values and scales. Any int8 value
  // is exact: the 32-bit sums stay below 2^31 with -128 too (255 · 128 ·
  // int8_max_depth = 2^31 - 2^23). Scales should be finite (checked where
  // they are read: linear, the checkpoint loader). Throws as above.
  int8_packed_weights(std::span<const int8_matrix> parts, index_t in) {
    pack(parts, in, [&](index_t row, std::int8_t* q) {
      for (const int8_matrix& part : parts) {
        if (row < part.values.rows) {
          std::copy_n(part.values.data + row * part.values.ld, k_, q);
          return part.scales[row];
        }
        row -= part.values.rows;
      }
      std::fill_n(q, k_, std::int8_t{0});
      return 0.0F;
    });
  }

  [[nodiscard]] index_t out_features() const { return n_; }
  [[nodiscard]] index_t in_features() const { return k_; }
  // Bytes held: values (padding of the last strip and of the depth to a
  // multiple of 4 included), scales and sums.
  [[nodiscard]] std::size_t bytes() const { return static_cast<std::size_t>(data_.size()); }
  [[nodiscard]] int8_packed_view<Arch> view() const {
    return {data_.data(), strips_, 0, n_, k_, std::max<index_t>(k_, 1)};
  }

 private:
  // Lays out the stacked rows of `parts` (the columns of op(B)): column(row, q)
  // writes that row's k int8 values to q and returns its scale (rows past the
  // last block: zeros).
  template <class Part, class Column>
  void pack(std::span<const Part> parts, index_t in, const Column& column) {
    reuseformer::detail::require(in <= detail::int8_max_depth, "int8 packed weights: inner size ", in, " exceeds ",
                                 detail::int8_max_depth, ", the deepest whose 32-bit sums cannot overflow");
    k_ = in;
    for (const Part& p : parts) n_ += rows_of(p);
    strips_ = ceil_div(n_, nr);
    const index_t kpad = detail::round_up(k_, kernel::depth_step), strip = kernel::strip_bytes(kpad);
    data_ = reuseformer::detail::aligned_array<std::int8_t>(strips_ * strip, "int8 packed weights");
    std::vector<std::int8_t> q(static_cast<std::size_t>(kpad), 0);  // the depth padding stays 0
    for (index_t s = 0; s < strips_; ++s) {
      std::int8_t* const out = data_.data() + s * strip;
      float scales[nr] = {};
      std::int32_t sums[nr] = {};
      std::int8_t* const values = out + kernel::header_bytes;
      for (index_t j = 0; j < nr; ++j) {
        scales[j] = column(s * nr + j, q.data());
        for (index_t p = 0; p < kpad; ++p) {
          values[detail::int8_strip_index<nr>(p, j)] = q[static_cast<std::size_t>(p)];
          sums[j] += q[static_cast<std::size_t>(p)];
        }
      }
      std::memcpy(out, scales, sizeof scales);
      std::memcpy(out + sizeof scales, sums, sizeof sums);
    }
  }
  static index_t rows_of(const matrix<const float>& p) { return p.rows; }
  static index_t rows_of(const int8_matrix& p) { return p.values.rows; }

  index_t n_ = 0, k_ = 0, strips_ = 0;
  reuseformer::detail::aligned_array<std::int8_t> data_;
};

}  // namespace reuseformer::gemm
