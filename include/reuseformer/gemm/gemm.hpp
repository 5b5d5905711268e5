#pragma once
// Matrix products: C = alpha * A * op(B) or C += alpha * A * op(B), blocked and
// packed for the micro-kernel (micro_kernel.hpp), as BLIS and most BLAS do.
//
// Loop order: columns of C in panels of NC, the inner dimension in blocks of KC
// (op(B)'s [KC, NC] block is packed once and stays in L2), rows in strips of MR
// (A's [MR, KC] strip is packed and stays in L1; a product A Aᵀ reads it from
// op(B)'s block instead), then the register tiles across the panel. The
// packing buffers come from the caller (a workspace slice sized by
// scratch_elements()), so a product allocates nothing; the split across threads
// is ours (parallel_multiply_add), so threads never nest.
//
// The architecture is the build's (simd::default_arch): each SIMD build of the
// tests runs its own kernel.

#include <algorithm>
#include <cstddef>

#include "reuseformer/core/parallel.hpp"
#include "reuseformer/core/tensor_view.hpp"
#include "reuseformer/core/workspace.hpp"
#include "reuseformer/gemm/matrix.hpp"
#include "reuseformer/gemm/micro_kernel.hpp"
#include "reuseformer/gemm/packing.hpp"
#include "reuseformer/simd/arch.hpp"

namespace reuseformer::gemm {

namespace detail {

// KC keeps an A strip (MR x KC) in L1 next to the B vectors streaming from L2;
// NC keeps the packed [KC, NC] block of op(B) (512 KiB) within a 1 MiB L2.
template <class T>
inline constexpr index_t kc_max = sizeof(T) == 4 ? 256 : 128;
inline constexpr index_t nc_max = 512;

inline index_t round_up(index_t x, index_t multiple) { return (x + multiple - 1) / multiple * multiple; }

// `extent` cut into the fewest blocks of at most `max` (rounded up to
// `multiple`), all of one size: 768 columns make two panels of 384, not 512 + 256.
inline index_t even_block(index_t extent, index_t max, index_t multiple) {
  const index_t blocks = (extent + max - 1) / max;
  return round_up((extent + blocks - 1) / blocks, multiple);
}

// Packing space for a product with n columns and inner size k, in column panels
// of at most nc: the op(B) block then one A strip. Never decreases when n or k
// grows, and is at least what even_block() picks for any smaller n or k.
template <class T, class Arch>
[[nodiscard]] index_t panel_elements(index_t n, index_t k, index_t nc = nc_max) {
  using shape = tile<T, Arch>;
  const index_t kc = std::min(k, kc_max<T>);
  return kc * round_up(std::min(n, nc), shape::nr) + shape::mr * kc;
}

// Called after a strip of rows is final; the full product needs nothing.
struct no_rows_callback {
  void operator()(index_t, index_t) const {}
};

// Which part of a square C a product computes: all of it; the lower triangle
// exactly (elements above the diagonal untouched); or the register tiles that
// reach the diagonal, whole (elements above it may be written: for a symmetric
// result whose mirror overwrites them, storing whole tiles is faster).
enum class part { all, lower, lower_tiles };

// Where the row strips of A come from: packed by pack_a, or, for a product
// A Aᵀ in one column panel (triangular.hpp), read in place from op(B)'s packed
// panel, which already holds every row of A: no second copy, and strips of
// tile::self_mr rows, which never straddle two of the panel's strips. The
// second is honoured where tile::reads_a_from_b; elsewhere A is packed.
enum class a_source { packed, b_panel };

// The blocked product behind multiply_add and the triangular products
// (triangular.hpp), in column panels of at most nc. For the lower parts, tiles
// right of the diagonal are skipped. rows_done(first, end) is called once rows
// [first, end) of C hold their final values, which happens strip by strip when
// C is one column panel (nc >= n).
// a_source::b_panel requires A = B (the same view), op_b = transpose::yes,
// m <= n and nc >= n.
template <class T, class Arch, a_source Source = a_source::packed, class RowsDone = no_rows_callback>
void blocked_product(T alpha, matrix<const T> a, matrix<const T> b, transpose op_b, matrix<T> c, T* scratch,
                     update mode, part computed, index_t nc = nc_max, RowsDone&& rows_done = {}) {
  using shape = tile<T, Arch>;
  constexpr index_t MR = shape::mr, NR = shape::nr;
  constexpr bool from_b = Source == a_source::b_panel && shape::reads_a_from_b;
  constexpr index_t strip = from_b ? shape::self_mr : MR;
  const index_t m = c.rows, n = c.cols, k = a.cols;
  if (k == 0 && mode == update::overwrite)  // an empty sum: the computed part of C is zero
    for (index_t i = 0; i < m; ++i)
      std::fill(c.data + i * c.ld, c.data + i * c.ld + (computed == part::lower ? std::min(i + 1, n) : n), T(0));
  if (m == 0 || n == 0 || k == 0) return;
  const index_t kc_step = even_block(k, kc_max<T>, 1), nc_step = even_block(n, nc, NR);
  T* const packed_b = scratch;
  T* const packed_a = scratch + kc_step * nc_step;
  const bool lower_only = computed != part::all;
  for (index_t jc = 0; jc < n; jc += nc_step) {
    const index_t ncur = std::min(nc_step, n - jc);
    for (index_t pc = 0; pc < k; pc += kc_step) {
      const index_t kcur = std::min(kc_step, k - pc);
      pack_b<Arch, NR>(op_b == transpose::yes ? b.block(jc, ncur, pc, kcur) : b.block(pc, kcur, jc, ncur), op_b,
                       packed_b);
      const bool accumulate = mode == update::accumulate || pc > 0;
      for (index_t ic = lower_only ? jc / strip * strip : 0; ic < m; ic += strip) {
        const index_t mr = std::min(strip, m - ic);
        // A lower-triangular strip ends at its last row's diagonal element.
        const index_t columns = lower_only ? std::min(ncur, ic + mr - jc) : ncur;
        // Depth steps of the strip are `lda` apart: MR in pack_a's layout, NR
        // in op(B)'s panel, where row ic sits at offset ic % NR of its strip.
        constexpr index_t lda = from_b ? NR : MR;
        const T* strip_a = packed_a;
        if constexpr (from_b)
          strip_a = packed_b + ic / NR * kcur * NR + ic % NR;
        else
          pack_a<Arch, MR>(a.block(ic, mr, pc, kcur), packed_a);
        for (index_t jr = 0; jr < columns; jr += NR) {
          T* const tile_c = c.data + ic * c.ld + jc + jr;
          const index_t lower = computed == part::lower ? ic - jc - jr : whole_tile;
          if (columns - jr <= shape::width)  // the diagonal ends within the first vector
            micro_kernel<T, Arch, 1, strip, lda>(kcur, strip_a, packed_b + jr * kcur, alpha, tile_c, c.ld, mr,
                                                 std::min(shape::width, ncur - jr), accumulate, lower);
          else
            micro_kernel<T, Arch, shape::vectors, strip, lda>(kcur, strip_a, packed_b + jr * kcur, alpha, tile_c,
                                                              c.ld, mr, std::min(NR, ncur - jr), accumulate, lower);
        }
        if (jc + ncur == n && pc + kcur == k) rows_done(ic, ic + mr);
      }
    }
  }
}

// How a product is split across threads: along its larger output dimension, in
// chunks that are multiples of `grain`, at most one chunk per thread. Small
// products stay on one thread: below ~64^3 multiply-adds the fork costs more.
struct split {
  bool along_rows;
  index_t chunk;
  index_t count;
};

inline split split_for(index_t m, index_t n, index_t k, int threads) {
  constexpr index_t grain = 16;
  constexpr index_t min_work = 64 * 64 * 64;
  const bool along_rows = m >= n;
  const index_t extent = along_rows ? m : n;
  if (threads <= 1 || m * n * k < min_work || extent < 2 * grain) return {along_rows, extent, 1};
  index_t chunk = (extent + threads - 1) / threads;
  chunk = (chunk + grain - 1) / grain * grain;
  return {along_rows, chunk, (extent + chunk - 1) / chunk};
}

}  // namespace detail

// Scratch elements one thread needs for C[m, n] += A[m, k] * op(B) run on
// `threads` threads (per thread; every thread needs this many). Never decreases
// when m, n or k grows, so scratch planned for a shape serves every smaller one.
template <class T, class Arch = simd::default_arch>
[[nodiscard]] index_t scratch_elements(index_t m, index_t n, index_t k, int threads = 1) {
  if (m == 0 || n == 0 || k == 0) return 0;
  const detail::split s = detail::split_for(m, n, k, threads);
  // The first chunk is the largest; panel_elements is monotone in n and k.
  return detail::panel_elements<T, Arch>(s.along_rows ? n : std::min(s.chunk, n), k);
}

// C = alpha * A * op(B) (update::overwrite) or C += alpha * A * op(B)
// (update::accumulate, the default) on the calling thread.
// Shapes: A [m, k]; op(B) [k, n] (B is [k, n] for transpose::no, [n, k] for
// transpose::yes, the PyTorch Linear weight layout); C [m, n].
// Requires: scratch has scratch_elements<T>(m', n', k') elements for some
// m' >= m, n' >= n, k' >= k, 64-byte aligned;
// C does not overlap A or B. Shapes are the caller's responsibility: this is
// the innermost loop.
template <class T, class Arch = simd::default_arch>
void multiply_add(T alpha, matrix<const T> a, matrix<const T> b, transpose op_b, matrix<T> c, T* scratch,
                  update mode = update::accumulate) {
  detail::blocked_product<T, Arch>(alpha, a, b, op_b, c, scratch, mode, detail::part::all);
}

// multiply_add split over up to `threads` threads; thread t uses
// scratch + t * scratch_stride. Requires scratch_stride >=
// scratch_elements<T>(m, n, k, threads). Must not be called from inside a
// parallel_for task.
template <class T, class Arch = simd::default_arch>
void parallel_multiply_add(T alpha, matrix<const T> a, matrix<const T> b, transpose op_b,
                           matrix<T> c, update mode, int threads, T* scratch,
                           index_t scratch_stride) {
  const index_t m = c.rows, n = c.cols, k = a.cols;
  const detail::split s = detail::split_for(m, n, k, threads);
  parallel_for(s.count, threads, [&](index_t part, int thread) {
    T* mine = scratch + thread * scratch_stride;
    const index_t begin = part * s.chunk;
    if (s.along_rows) {
      const index_t rows = std::min(s.chunk, m - begin);
      multiply_add<T, Arch>(alpha, a.block(begin, rows, 0, k), b, op_b, c.block(begin, rows, 0, n), mine,
                   mode);
    } else {
      const index_t cols = std::min(s.chunk, n - begin);
      const matrix<const T> b_part =
          op_b == transpose::yes ? b.block(begin, cols, 0, k) : b.block(0, k, begin, cols);
      multiply_add<T, Arch>(alpha, a, b_part, op_b, c.block(0, m, begin, cols), mine, mode);
    }
  });
}

}  // namespace reuseformer::gemm

