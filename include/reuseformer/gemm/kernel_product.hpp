#pragma once
// The blocked product of the narrow-weight backends (bf16_gemm.hpp,
// int8_gemm.hpp): C = A op(B) or C += A op(B), A float, op(B) packed once in a
// kernel's own layout. The blocking is the float products' (gemm.hpp: column
// panels of NC, the weight's depth blocks, row strips of MR, register tiles);
// only the kernel differs, a template parameter:
//   Kernel::mr, nr, depth_step         tile rows, columns; a depth block's padding multiple
//   Kernel::a_type, b_type             A strip and B panel elements
//   scratch_elements(kpad, nc)         floats of scratch one thread needs
//   strip_buffer(scratch, kpad, nc)    where A's strip goes in that scratch
//   pack_strip(a, kpad, strip)         A's [rows <= MR, kcur] block as the kernel reads it
//   panel(block, kpad, ncur, scratch)  the packed block as the kernel reads it
//   tile_b(panel, t, kpad)             the t-th NR-column strip of a panel
//   multiply(kpad, strip, b, c, ldc, rows, cols, mode)   C's tile, final values in float
// and the packed view View: kc (its depth blocks), block(pc, jc), columns(first, count).

#include <algorithm>

#include "reuseformer/core/parallel.hpp"
#include "reuseformer/core/tensor_view.hpp"
#include "reuseformer/core/thread_scratch.hpp"
#include "reuseformer/gemm/blocking.hpp"
#include "reuseformer/gemm/gemm.hpp"
#include "reuseformer/gemm/matrix.hpp"

namespace reuseformer::gemm::detail {

// The product on the calling thread; done(row, rows, col, cols) on each block
// of C once final (with k = 0, once for all of C).
template <class Kernel, class View, class Done>
void kernel_blocked_product(matrix<const float> a, const View& b, matrix<float> c, float* scratch, update mode,
                            Done&& done) {
  constexpr index_t MR = Kernel::mr, NR = Kernel::nr;
  const index_t m = c.rows, n = c.cols, k = a.cols;
  if (m == 0 || n == 0) return;
  if (k == 0) {  // an empty sum
    if (mode == update::overwrite)
      for (index_t i = 0; i < m; ++i) std::fill_n(c.data + i * c.ld, n, 0.0F);
    done(0, m, 0, n);
    return;
  }
  const index_t nc_step = even_block(n, nc_max, NR), kc_pad = round_up(b.kc, Kernel::depth_step);
  typename Kernel::a_type* const strip = Kernel::strip_buffer(scratch, kc_pad, nc_step);
  for (index_t jc = 0; jc < n; jc += nc_step) {
    const index_t ncur = std::min(nc_step, n - jc);
    for (index_t pc = 0; pc < k; pc += b.kc) {
      const index_t kcur = std::min(b.kc, k - pc), kpad = round_up(kcur, Kernel::depth_step);
      const typename Kernel::b_type* const panel = Kernel::panel(b.block(pc, jc), kpad, ncur, scratch);
      const update block_mode = pc > 0 ? update::accumulate : mode;
      const index_t tiles = ceil_div(ncur, NR);
      for (index_t ic = 0; ic < m; ic += MR) {
        const index_t mr = std::min(MR, m - ic), next_rows = std::clamp<index_t>(m - ic - MR, 0, MR);
        Kernel::pack_strip(a.block(ic, mr, pc, kcur), kpad, strip);
        for (index_t jr = 0, t = 0; jr < ncur; jr += NR, ++t) {
          // The next strip's rows of A, spread over this strip's tiles.
          prefetch_strip_share(a, ic + MR, next_rows, pc, kcur, t, tiles);
          Kernel::multiply(kpad, strip, Kernel::tile_b(panel, t, kpad), c.data + ic * c.ld + jc + jr, c.ld, mr,
                           std::min(NR, ncur - jr), block_mode);
        }
        if (pc + kcur == k) done(ic, mr, jc, ncur);
      }
    }
  }
}

// kernel_blocked_product split over up to scratch.threads threads
// (parallel_parts, as every product), then `epilogue` on C's final values.
template <class Kernel, class Arch, class View, class Epilogue>
void parallel_kernel_product(matrix<const float> a, const View& b, matrix<float> c, update mode,
                             const thread_scratch<float>& scratch, const Epilogue& epilogue) {
  static_assert(tile<float, Arch>::nr % Kernel::nr == 0, "a split along columns cuts the weight at whole strips");
  const index_t k = a.cols;
  parallel_parts<float, Arch>(
      c.rows, c.cols, k, scratch, epilogue,
      [&](index_t row0, index_t rows, index_t col0, index_t cols, float* mine, const auto& done) {
        kernel_blocked_product<Kernel>(a.block(row0, rows, 0, k), b.columns(col0, cols),
                                       c.block(row0, rows, col0, cols), mine, mode, done);
      });
}

}  // namespace reuseformer::gemm::detail
