#pragma once
// The cache blocking of the matrix products (gemm.hpp), in one place because a
// prepacked weight (packed_weights.hpp) must be laid out in the very depth
// blocks the product walks.

#include <algorithm>

#include "reuseformer/core/tensor_view.hpp"
#include "reuseformer/gemm/matrix.hpp"

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

// Brings tile t's share (of `tiles`) of the next strip into L2: of its `rows`
// rows of A from row `first`, the kcur elements from depth pc. The products
// call it for each register tile of the current strip, so that the next strip
// is packed from L2. A of a deep product is found in no cache (A [1024, 3072]
// is 12 MiB of float, read once per column panel and depth block), and packing
// it stalled on these loads.
template <class T>
void prefetch_strip_share(matrix<const T> a, index_t first, index_t rows, index_t pc, index_t kcur, index_t t,
                          index_t tiles) {
  for (index_t r = t * rows / tiles, end = (t + 1) * rows / tiles; r < end; ++r)
    for (index_t e = 0; e < kcur; e += 64 / static_cast<index_t>(sizeof(T)))
      __builtin_prefetch(a.data + (first + r) * a.ld + pc + e, 0, 2);
}

}  // namespace reuseformer::gemm::detail
