#pragma once
// Products with a bfloat16 weight: C = A op(B) or C += A op(B), with A float
// (rounded to bf16, to nearest even, as its strips are packed), op(B) a
// bf16_packed_weights, and every sum accumulated in float. The blocking is the
// float products' (gemm.hpp: column panels of NC, the weight's depth blocks,
// row strips of MR, register tiles), the kernel bf16_micro_kernel.hpp's, and
// the split across threads gemm::detail::parallel_parts, as for every product.

#include <algorithm>

#include "reuseformer/core/parallel.hpp"
#include "reuseformer/core/tensor_view.hpp"
#include "reuseformer/gemm/bf16_micro_kernel.hpp"
#include "reuseformer/gemm/bf16_packed_weights.hpp"
#include "reuseformer/gemm/blocking.hpp"
#include "reuseformer/gemm/gemm.hpp"
#include "reuseformer/gemm/matrix.hpp"
#include "reuseformer/simd/arch.hpp"

namespace reuseformer::gemm {

namespace detail {

// The product on the calling thread; done(row, rows, col, cols) on each block
// of C once final (with k = 0, once for all of C).
template <class Arch, class Done>
void bf16_blocked_product(matrix<const float> a, const bf16_packed_view<Arch>& b, matrix<float> c, float* scratch,
                          update mode, Done&& done) {
  using kernel = bf16_kernel<Arch>;
  constexpr index_t MR = kernel::mr, NR = kernel::nr;
  const index_t m = c.rows, n = c.cols, k = a.cols;
  if (m == 0 || n == 0) return;
  if (k == 0) {  // an empty sum
    if (mode == update::overwrite)
      for (index_t i = 0; i < m; ++i) std::fill_n(c.data + i * c.ld, n, 0.0F);
    done(0, m, 0, n);
    return;
  }
  const index_t nc_step = even_block(n, nc_max, NR), kc_pad = round_up(b.kc, 2);
  typename kernel::a_type* const strip = kernel::strip_buffer(scratch, kc_pad, nc_step);
  for (index_t jc = 0; jc < n; jc += nc_step) {
    const index_t ncur = std::min(nc_step, n - jc);
    for (index_t pc = 0; pc < k; pc += b.kc) {
      const index_t kcur = std::min(b.kc, k - pc), kpad = round_up(kcur, 2);
      const typename kernel::b_type* const panel = kernel::panel(b.block(pc, jc), kpad, ncur, scratch);
      const update block_mode = pc > 0 ? update::accumulate : mode;
      const index_t tiles = ceil_div(ncur, NR);
      for (index_t ic = 0; ic < m; ic += MR) {
        const index_t mr = std::min(MR, m - ic), next_rows = std::clamp<index_t>(m - ic - MR, 0, MR);
        kernel::pack_strip(a.block(ic, mr, pc, kcur), kpad, strip);
        for (index_t jr = 0, t = 0; jr < ncur; jr += NR, ++t) {
          // The next strip's rows of A, spread over this strip's tiles.
          prefetch_strip_share(a, ic + MR, next_rows, pc, kcur, t, tiles);
          kernel::multiply(kpad, strip, panel + jr * kpad, c.data + ic * c.ld + jc + jr, c.ld, mr,
                           std::min(NR, ncur - jr), block_mode);
        }
        if (pc + kcur == k) done(ic, mr, jc, ncur);
      }
    }
  }
}

}  // namespace detail

// Scratch elements (floats) one thread needs for a product of inner size k
// with a bf16 weight, any rows and columns: the kernel's A strip, and on the
// widening path its float copy of a weight panel. Never decreases when k
// grows (k = 800 is two blocks of 400, shallower than k = 768's one), so
// scratch planned for k serves every smaller inner size.
template <class Arch = simd::default_arch>
[[nodiscard]] index_t bf16_scratch_elements(index_t k) {
  if (k == 0) return 0;
  const index_t deepest = std::min(k, detail::kc_max<bfloat16>);  // the deepest block of any k' <= k
  return detail::bf16_kernel<Arch>::scratch_elements(detail::round_up(deepest, 2), detail::nc_max);
}

// C = A op(B) (update::overwrite) or C += A op(B) (update::accumulate) split
// over up to scratch.threads threads, then `epilogue` on C's final values (see
// no_epilogue, rows_epilogue). Shapes: A [m, k], b a view of [k, n], C [m, n].
// Requires: scratch.stride >= bf16_scratch_elements<Arch>(k), a multiple of
// 16, scratch.data 64-byte aligned; C does not overlap A. Must not be called
// from inside a parallel_for task.
template <class Arch = simd::default_arch, class Epilogue = no_epilogue>
void parallel_multiply_add(matrix<const float> a, const bf16_packed_view<Arch>& b, matrix<float> c, update mode,
                           const thread_scratch<float>& scratch, const Epilogue& epilogue = {}) {
  static_assert(detail::tile<float, Arch>::nr % bf16_packed_view<Arch>::nr == 0,
                "a split along columns cuts the weight at whole strips");
  const index_t k = a.cols;
  detail::parallel_parts<float, Arch>(
      c.rows, c.cols, k, scratch, epilogue,
      [&](index_t row0, index_t rows, index_t col0, index_t cols, float* mine, const auto& done) {
        detail::bf16_blocked_product<Arch>(a.block(row0, rows, 0, k), b.columns(col0, cols),
                                           c.block(row0, rows, col0, cols), mine, mode, done);
      });
}

}  // namespace reuseformer::gemm
