#pragma once
// Matrix products: C = alpha * A * op(B) or C += alpha * A * op(B), blocked and
// packed for the micro-kernel (micro_kernel.hpp), as BLIS and most BLAS do.
//
// Loop order: columns of C in panels of NC, the inner dimension in blocks of KC
// (op(B)'s [KC, NC] block is packed once and stays in L2), rows in strips of MR
// (A's [MR, KC] strip is packed and stays in L1; a product A Aᵀ reads it from
// op(B)'s block instead), then the register tiles across the panel. A weight
// packed once when its layer was built (packed_weights.hpp) is read in place of
// op(B)'s packed block. The packing buffers come from the caller (a workspace
// slice sized by scratch_elements()), so a product allocates nothing; the split
// across threads is ours (parallel_multiply_add), so threads never nest.
//
// An epilogue runs on blocks of C as soon as they are final, while they are
// still in cache: a layer's bias and activation, or (given whole rows) its
// residual LayerNorm, without another pass over C.
//
// The architecture is the build's (simd::default_arch): each SIMD build of the
// tests runs its own kernel.

#include <algorithm>
#include <cstddef>

#include "reuseformer/core/parallel.hpp"
#include "reuseformer/core/tensor_view.hpp"
#include "reuseformer/core/thread_scratch.hpp"
#include "reuseformer/core/workspace.hpp"
#include "reuseformer/gemm/blocking.hpp"
#include "reuseformer/gemm/matrix.hpp"
#include "reuseformer/gemm/micro_kernel.hpp"
#include "reuseformer/gemm/packed_weights.hpp"
#include "reuseformer/gemm/packing.hpp"
#include "reuseformer/simd/arch.hpp"

namespace reuseformer::gemm {

// Epilogues. A block epilogue is called as e(row, rows, col, cols) once the
// block [row, row + rows) x [col, col + cols) of C holds its final product
// (every element of C exactly once). Wrapped in rows_epilogue, it is called as
// e(row, rows) once whole rows of C are final instead.
struct no_epilogue {
  void operator()(index_t, index_t, index_t, index_t) const {}
};

template <class F>
struct rows_epilogue {
  F on_rows;
};

namespace detail {

// op(B) as the caller stores it, packed panel by panel into scratch.
// b is [n, k] for transpose::yes (the PyTorch Linear weight layout), [k, n] for no.
template <class T, class Arch>
struct unpacked_b {
  static constexpr bool needs_buffer = true;
  static constexpr index_t nr = tile<T, Arch>::nr;
  matrix<const T> b;
  transpose op;

  [[nodiscard]] unpacked_b columns(index_t first, index_t count) const {
    return {op == transpose::yes ? b.block(first, count, 0, b.cols) : b.block(0, b.rows, first, count), op};
  }
  const T* panel(index_t pc, index_t kcur, index_t jc, index_t ncur, T* buffer) const {
    pack_b<T, Arch, nr>(op == transpose::yes ? b.block(jc, ncur, pc, kcur) : b.block(pc, kcur, jc, ncur), op, buffer);
    return buffer;
  }
};

// Packing space for a product with n columns and inner size k, in column panels
// of at most nc: the op(B) block (unless op(B) is prepacked) then one A strip.
// Never decreases when n or k grows, and is at least what even_block() picks
// for any smaller n or k.
template <class T, class Arch, bool PackB = true>
[[nodiscard]] index_t panel_elements(index_t n, index_t k, index_t nc = nc_max) {
  using shape = tile<T, Arch>;
  const index_t kc = std::min(k, kc_max<T>);
  return (PackB ? kc * round_up(std::min(n, nc), shape::nr) : 0) + shape::mr * kc;
}

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

// A prepacked op(B) (a layer's weight) comes from memory when the first row
// strip of a block reads it. The next block is fetched into L2 meanwhile, a
// share of it before each strip of this one, so that the next block's first
// strip does not wait on memory: the hardware prefetchers see a block only as
// it is read and stop at page boundaries.
struct block_prefetch {
  const char* next = nullptr;
  index_t lines = 0, per_strip = 0;

  void fetch(index_t strip) const {
    for (index_t l = strip * per_strip, end = std::min(lines, l + per_strip); l < end; ++l)
      __builtin_prefetch(next + l * 64, 0, 2);
  }
};

// The block at depth pc, column jc (none past the last column, or when op(B)
// is packed into a buffer by the product itself), shared among `strips` strips.
template <class T, class B>
[[nodiscard]] block_prefetch next_block(const B& b, index_t pc, index_t jc, index_t kc_step, index_t nc_step, index_t k,
                                        index_t n, index_t strips) {
  if constexpr (B::needs_buffer) {
    return {};
  } else {
    if (jc >= n) return {};
    const index_t kcur = std::min(kc_step, k - pc), ncur = std::min(nc_step, n - jc);
    const index_t lines = ceil_div(kcur * round_up(ncur, B::nr) * static_cast<index_t>(sizeof(T)), 64);
    return {reinterpret_cast<const char*>(b.panel(pc, kcur, jc, ncur, nullptr)), lines, ceil_div(lines, strips)};
  }
}

// The blocked product behind multiply_add and the triangular products
// (triangular.hpp), in column panels of at most nc; b is unpacked_b or a
// packed_view. For the lower parts, tiles right of the diagonal are skipped.
// done(row, rows, col, cols) is called for each block of C once final (a block
// epilogue); with k = 0, once for all of C.
// a_source::b_panel requires A = B (the same view, transpose::yes), m <= n and nc >= n.
template <class T, class Arch, a_source Source = a_source::packed, class B, class Done = no_epilogue>
void blocked_product(T alpha, matrix<const T> a, const B& b, matrix<T> c, T* scratch, update mode, part computed,
                     index_t nc = nc_max, Done&& done = {}) {
  using shape = tile<T, Arch>;
  constexpr index_t MR = shape::mr, NR = shape::nr;
  constexpr bool from_b = Source == a_source::b_panel && shape::reads_a_from_b;
  constexpr index_t strip = from_b ? shape::self_mr : MR;
  constexpr index_t short_strip = short_strip_rows(strip);
  // A strip of A is packed when the panel's tiles share the copy. A panel of
  // at most two tiles (A V with 64-wide heads) would copy its A strip to read
  // it twice: its kernels read A's rows in place (every row of a strip exists
  // then; a shorter last strip is still packed).
  constexpr index_t in_place_columns = 2 * NR;
  const index_t m = c.rows, n = c.cols, k = a.cols;
  if (m == 0 || n == 0) return;
  if (k == 0) {  // an empty sum: the computed part of C is zero
    if (mode == update::overwrite)
      for (index_t i = 0; i < m; ++i)
        std::fill(c.data + i * c.ld, c.data + i * c.ld + (computed == part::lower ? std::min(i + 1, n) : n), T(0));
    done(0, m, 0, n);
    return;
  }
  const index_t kc_step = depth_block<T>(k), nc_step = even_block(n, nc, NR);
  T* const packed_b = scratch;
  T* const packed_a = scratch + (B::needs_buffer ? kc_step * nc_step : 0);
  const bool lower_only = computed != part::all;
  for (index_t jc = 0; jc < n; jc += nc_step) {
    const index_t ncur = std::min(nc_step, n - jc);
    for (index_t pc = 0; pc < k; pc += kc_step) {
      const index_t kcur = std::min(kc_step, k - pc);
      const T* const panel = b.panel(pc, kcur, jc, ncur, packed_b);
      const update block_mode = pc > 0 ? update::accumulate : mode;
      const index_t first_strip = lower_only ? jc / strip * strip : 0;
      const block_prefetch ahead = next_block<T>(b, pc + kcur < k ? pc + kcur : 0, pc + kcur < k ? jc : jc + ncur,
                                                 kc_step, nc_step, k, n, ceil_div(m - first_strip, strip));
      for (index_t ic = first_strip; ic < m; ic += strip) {
        ahead.fetch((ic - first_strip) / strip);
        const index_t mr = std::min(strip, m - ic);
        // A lower-triangular strip ends at its last row's diagonal element.
        const index_t columns = lower_only ? std::min(ncur, ic + mr - jc) : ncur;
        // Depth steps of the strip are `lda` apart: MR in pack_a's layout, NR
        // in op(B)'s panel, where row ic sits at offset ic % NR of its strip.
        constexpr index_t lda = from_b ? NR : MR;
        const T* strip_a = packed_a;
        const bool read_in_place = !from_b && ncur <= in_place_columns && (mr == strip || mr == short_strip);
        if constexpr (from_b)
          strip_a = panel + ic / NR * kcur * NR + ic % NR;
        else if (read_in_place)
          strip_a = a.data + ic * a.ld + pc;
        else
          pack_a<T, Arch, MR>(a.block(ic, mr, pc, kcur), packed_a);
        for (index_t jr = 0; jr < columns; jr += NR) {
          if constexpr (!from_b)  // the next strip's rows of A, spread over this strip's tiles
            prefetch_strip_share(a, ic + mr, std::clamp<index_t>(m - ic - mr, 0, MR), pc, kcur, jr / NR,
                                 ceil_div(columns, NR));
          T* const tile_c = c.data + ic * c.ld + jc + jr;
          const index_t lower = computed == part::lower ? ic - jc - jr : whole_tile;
          const auto kernel = [&]<index_t NV, index_t rows>() {
            const index_t cols = std::min(NV * shape::width, ncur - jr);
            if constexpr (!from_b) {
              if (read_in_place)
                return micro_kernel<T, Arch, NV, rows, in_place>(kcur, strip_a, panel + jr * kcur, alpha, tile_c, c.ld,
                                                                 mr, cols, block_mode, lower, a.ld);
            }
            micro_kernel<T, Arch, NV, rows, lda>(kcur, strip_a, panel + jr * kcur, alpha, tile_c, c.ld, mr, cols,
                                                 block_mode, lower);
          };
          const bool one_vector = columns - jr <= shape::width;  // e.g. the diagonal ends within it
          if (mr <= short_strip)  // the last strip of m = 128 (8 rows): no multiplying of padding rows
            one_vector ? kernel.template operator()<1, short_strip>()
                       : kernel.template operator()<shape::vectors, short_strip>();
          else
            one_vector ? kernel.template operator()<1, strip>() : kernel.template operator()<shape::vectors, strip>();
        }
        if (pc + kcur == k) done(ic, mr, jc, columns);
      }
    }
  }
}

// How a product is split across threads: in chunks of whole register tiles (MR
// rows or NR columns: a prepacked op(B) can only be cut at its strips), at most
// one chunk per thread, along whichever dimension makes the threads read less.
// A row split has every thread read all of op(B) (a layer's weight, from
// memory); a column split has every thread read and pack all of A, which costs
// about twice its size. With 2 threads: rows when 3m >= n. Weight products on
// few rows (128 tokens) thus split columns, and do not double the weight
// traffic that bounds them. Small products stay on one thread: below ~64^3
// multiply-adds the fork costs more.
struct split {
  bool along_rows;
  index_t chunk;
  index_t count;
};

template <class T, class Arch>
[[nodiscard]] split split_for(index_t m, index_t n, index_t k, int threads) {
  constexpr index_t min_work = 64 * 64 * 64;
  const bool along_rows = (2 * threads - 1) * m >= (threads - 1) * n;  // T|B| + |A| <= |B| + 2T|A|
  const index_t extent = along_rows ? m : n, grain = along_rows ? tile<T, Arch>::mr : tile<T, Arch>::nr;
  if (threads <= 1 || m * n * k < min_work || extent < 2 * grain) return {along_rows, extent, 1};
  const index_t chunk = round_up(ceil_div(extent, threads), grain);
  return {along_rows, chunk, ceil_div(extent, chunk)};
}

// A product C[m, n] of inner size k split across threads (see split_for), with
// its epilogue: compute(row0, rows, col0, cols, scratch, done) computes that
// block of C on the calling thread, in its slice of scratch, and calls
// done(row, count, col, width) (relative to the block) on sub-blocks as they
// become final. Block epilogues run inside every part; a rows_epilogue runs
// inside the parts when they hold whole rows, and after the product otherwise.
// The kernel is the caller's: ours (parallel_product), or another library's
// sequential one under the same split (eigen/products.hpp).
template <class T, class Arch, class Epilogue, class Compute>
void parallel_parts(index_t m, index_t n, index_t k, const thread_scratch<T>& scratch, const Epilogue& epilogue,
                    const Compute& compute) {
  const int threads = scratch.threads;
  constexpr bool by_rows = requires { epilogue.on_rows; };
  const split s = split_for<T, Arch>(m, n, k, threads);
  const bool whole_rows = s.along_rows || s.count == 1;
  parallel_for(s.count, threads, [&](index_t part, int thread) {
    T* mine = scratch.slice(thread);
    const index_t begin = part * s.chunk;
    const index_t rows = s.along_rows ? std::min(s.chunk, m - begin) : m;
    const index_t cols = s.along_rows ? n : std::min(s.chunk, n - begin);
    const index_t row0 = s.along_rows ? begin : 0, col0 = s.along_rows ? 0 : begin;
    const auto done = [&](index_t row, index_t count, index_t col, index_t width) {
      if constexpr (by_rows) {
        if (whole_rows && col + width == cols) epilogue.on_rows(row0 + row, count);
      } else {
        epilogue(row0 + row, count, col0 + col, width);
      }
    };
    compute(row0, rows, col0, cols, mine, done);
  });
  if constexpr (by_rows) {
    if (whole_rows) return;
    constexpr index_t rows_per_task = tile<T, Arch>::mr;
    parallel_for(ceil_div(m, rows_per_task), threads, [&](index_t task, int) {
      const index_t first = task * rows_per_task;
      epilogue.on_rows(first, std::min(rows_per_task, m - first));
    });
  }
}

// The product split across threads (see parallel_multiply_add), with its epilogue.
template <class T, class Arch, class B, class Epilogue>
void parallel_product(T alpha, matrix<const T> a, const B& b, matrix<T> c, update mode,
                      const thread_scratch<T>& scratch, const Epilogue& epilogue) {
  const index_t k = a.cols;
  parallel_parts<T, Arch>(c.rows, c.cols, k, scratch, epilogue,
                          [&](index_t row0, index_t rows, index_t col0, index_t cols, T* mine, const auto& done) {
                            blocked_product<T, Arch>(alpha, a.block(row0, rows, 0, k), b.columns(col0, cols),
                                                     c.block(row0, rows, col0, cols), mine, mode, part::all, nc_max,
                                                     done);
                          });
}

}  // namespace detail

// Scratch elements one thread needs for C[m, n] += A[m, k] * op(B), on any
// number of threads (per thread; every thread needs this many): a thread's
// part has at most n columns however the product is split. Never decreases
// when m, n or k grows, so scratch planned for a shape serves every smaller one.
template <class T, class Arch = simd::default_arch>
[[nodiscard]] index_t scratch_elements(index_t m, index_t n, index_t k) {
  if (m == 0 || n == 0 || k == 0) return 0;
  return detail::panel_elements<T, Arch>(n, k);
}

// The same for a product whose op(B) is prepacked (packed_weights): one A strip.
template <class T, class Arch = simd::default_arch>
[[nodiscard]] index_t prepacked_scratch_elements(index_t k) {
  return k == 0 ? 0 : detail::panel_elements<T, Arch, false>(0, k);
}

// C = alpha * A * op(B) (update::overwrite) or C += alpha * A * op(B)
// (update::accumulate) on the calling thread. Every product entry point takes
// its arguments in this order: alpha, A, B (and op), C, mode, scratch.
// Shapes: A [m, k]; op(B) [k, n] (B is [k, n] for transpose::no, [n, k] for
// transpose::yes, the PyTorch Linear weight layout); C [m, n].
// Requires: scratch has scratch_elements<T>(m', n', k') elements for some
// m' >= m, n' >= n, k' >= k, 64-byte aligned;
// C does not overlap A or B. Shapes are the caller's responsibility: this is
// the innermost loop.
template <class T, class Arch = simd::default_arch>
void multiply_add(T alpha, matrix<const T> a, matrix<const T> b, transpose op_b, matrix<T> c, update mode, T* scratch) {
  detail::blocked_product<T, Arch>(alpha, a, detail::unpacked_b<T, Arch>{b, op_b}, c, scratch, mode, detail::part::all);
}

// The same with op(B) prepacked (gemm::pack or packed_weights::view(), [k', n']
// with k' = k, n' >= n: its first n columns are read). Requires scratch of
// prepacked_scratch_elements<T>(k') elements, 64-byte aligned. Bit for bit the
// product of the unpacked op(B).
template <class T, class Arch = simd::default_arch>
void multiply_add(T alpha, matrix<const T> a, const packed_view<T, Arch>& b, matrix<T> c, update mode, T* scratch) {
  detail::blocked_product<T, Arch>(alpha, a, b, c, scratch, mode, detail::part::all);
}

// multiply_add split over up to scratch.threads threads, each in its slice of
// scratch. Requires scratch.stride >= scratch_elements<T>(m, n, k), slices
// 64-byte aligned. Must not be called from inside a parallel_for task.
template <class T, class Arch = simd::default_arch>
void parallel_multiply_add(T alpha, matrix<const T> a, matrix<const T> b, transpose op_b, matrix<T> c, update mode,
                           const thread_scratch<T>& scratch) {
  detail::parallel_product<T, Arch>(alpha, a, detail::unpacked_b<T, Arch>{b, op_b}, c, mode, scratch, no_epilogue{});
}

// The same with op(B) prepacked (b = packed_weights::view(), [k, n]), then
// `epilogue` on C's final values (see no_epilogue, rows_epilogue). Requires
// scratch.stride >= prepacked_scratch_elements<T>(k). Bit for bit the product
// of the unpacked weight.
template <class T, class Arch = simd::default_arch, class Epilogue = no_epilogue>
void parallel_multiply_add(T alpha, matrix<const T> a, const packed_view<T, Arch>& b, matrix<T> c, update mode,
                           const thread_scratch<T>& scratch, const Epilogue& epilogue = {}) {
  detail::parallel_product<T, Arch>(alpha, a, b, c, mode, scratch, epilogue);
}

}  // namespace reuseformer::gemm
