#pragma once
// The cache blocking of the matrix products (gemm.hpp), in one place because a
// prepacked weight (packed_weights.hpp) must be laid out in the very depth
// blocks the product walks.

#include <algorithm>

#include "reuseformer/core/tensor_view.hpp"

namespace reuseformer::gemm::detail {

// KC keeps an A strip (MR x KC: 18 KiB at MR = 12) in a 32 KiB L1 next to the
// B vectors streaming from L2, and is as deep as that allows, so that C's
// tiles are reloaded and stored once per KC steps as seldom as possible; NC
// keeps the packed [KC, NC] block of op(B) (768 KiB) within a 1 MiB L2. Both
// budgets are bytes: 384 deep for float, 192 for double, 768 for bfloat16.
template <class T>
inline constexpr index_t kc_max = 1536 / static_cast<index_t>(sizeof(T));
inline constexpr index_t nc_max = 512;

[[nodiscard]] inline index_t round_up(index_t x, index_t multiple) { return ceil_div(x, multiple) * multiple; }

// `extent` cut into the fewest blocks of at most `max` (rounded up to
// `multiple`), all of one size: 768 columns make two panels of 384, not 512 + 256.
[[nodiscard]] inline index_t even_block(index_t extent, index_t max, index_t multiple) {
  return round_up(ceil_div(extent, ceil_div(extent, max)), multiple);
}

// The depth of the blocks a product with inner size k is cut into (1 for k = 0).
template <class T>
[[nodiscard]] index_t depth_block(index_t k) {
  return k == 0 ? 1 : even_block(k, kc_max<T>, 1);
}

}  // namespace reuseformer::gemm::detail
