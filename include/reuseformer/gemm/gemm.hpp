#pragma once
// Matrix products: C += alpha * A * op(B), with Eigen's blocked kernel doing the work.
//
// Why not `C.noalias() = A * B.transpose()` on Eigen::Map? Eigen then allocates
// its packing buffers on the heap for every large product and may start its own
// OpenMP threads. Here the packing buffers come from the caller (a workspace
// slice sized by scratch_elements()), the kernel is Eigen's sequential one, and
// the split across threads is ours (parallel_for), so a forward pass allocates
// nothing and never nests threads.

#include <algorithm>
#include <cstddef>
#include <type_traits>

// GCC 12 reports a false -Wuninitialized inside its own avx512fintrin.h when
// Eigen's AVX-512 packing routines are inlined (GCC bug 105593, fixed in GCC 13);
// the pragma scopes the suppression to the Eigen product code instantiated here.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <Eigen/Core>

#include "reuseformer/core/parallel.hpp"
#include "reuseformer/core/tensor_view.hpp"
#include "reuseformer/core/workspace.hpp"

namespace reuseformer::gemm {

// A row-major matrix with a row stride: rows x cols, element (i, j) at data[i*ld + j].
// Strides let a product read or write one attention head (dh columns of a
// [N, d] matrix) in place.
template <class T>
struct matrix {
  T* data;
  index_t rows;
  index_t cols;
  index_t ld;

  // The sub-matrix of rows [row, row+nrows) and columns [col, col+ncols).
  [[nodiscard]] matrix block(index_t row, index_t nrows, index_t col, index_t ncols) const {
    return {data + row * ld + col, nrows, ncols, ld};
  }
  operator matrix<const T>() const  // NOLINT(google-explicit-constructor)
    requires(!std::is_const_v<T>)
  {
    return {data, rows, cols, ld};
  }
};

enum class transpose { no, yes };

// Whether a product adds to C or replaces it. Eigen's kernel only accumulates;
// `overwrite` zeroes C first, chunk by chunk on the thread that then computes it,
// so the zeroing is parallel and leaves C hot in that thread's cache.
enum class update { overwrite, accumulate };

namespace detail {

// Eigen computes column-major results; C = A*op(B) row-major is Cᵀ = op(B)ᵀ * Aᵀ
// column-major, so op(B)ᵀ is Eigen's left operand. Its rows ("m" to Eigen) are
// our n, its columns ("n" to Eigen) our m.
struct blocking_sizes {
  index_t kc, mc, nc;

  // Packed lhs panel first, then the rhs panel, each cache-line aligned.
  template <class T>
  [[nodiscard]] index_t lhs_elements() const {
    return round_to_line<T>(kc * mc);
  }
  template <class T>
  [[nodiscard]] index_t elements() const {
    return lhs_elements<T>() + kc * nc;
  }
};

template <class T>
[[nodiscard]] blocking_sizes eigen_heuristic(index_t m, index_t n, index_t k) {
  Eigen::Index kc = k, mc = n, nc = m;
  Eigen::internal::computeProductBlockingSizes<T, T, 1>(kc, mc, nc, Eigen::Index(1));
  return {kc, mc, nc};
}

// Eigen's heuristic is not monotone in the shape (k = 256 keeps kc = 256, k = 300
// gets kc = 152), so a smaller product can want more packing space than a larger
// one. Caps make it monotone: each size is at most min(dimension, cap), with the
// caps taken from Eigen's own choice for a large product on this machine.
template <class T>
[[nodiscard]] blocking_sizes caps_for(index_t m, index_t n, index_t k) {
  static const blocking_sizes large = eigen_heuristic<T>(4096, 4096, 4096);
  return {std::min(k, large.kc), std::min(n, large.mc), std::min(m, large.nc)};
}

// The blocking a product runs with: Eigen's heuristic, clamped to the caps, so
// it never needs more than caps_for(m, n, k).elements() of scratch.
template <class T>
[[nodiscard]] blocking_sizes blocking_for(index_t m, index_t n, index_t k) {
  const blocking_sizes h = eigen_heuristic<T>(m, n, k), cap = caps_for<T>(m, n, k);
  return {std::min(h.kc, cap.kc), std::min(h.mc, cap.mc), std::min(h.nc, cap.nc)};
}

template <class T>
class external_blocking : public Eigen::internal::level3_blocking<T, T> {
 public:
  external_blocking(const blocking_sizes& sizes, T* scratch) {
    this->m_kc = sizes.kc;
    this->m_mc = sizes.mc;
    this->m_nc = sizes.nc;
    this->m_blockA = scratch;
    this->m_blockB = scratch + sizes.template lhs_elements<T>();
  }
};

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
template <class T>
[[nodiscard]] index_t scratch_elements(index_t m, index_t n, index_t k, int threads = 1) {
  if (m == 0 || n == 0 || k == 0) return 0;
  const detail::split s = detail::split_for(m, n, k, threads);
  // The first chunk is the largest; caps_for is monotone in every dimension.
  return s.along_rows ? detail::caps_for<T>(std::min(s.chunk, m), n, k).template elements<T>()
                      : detail::caps_for<T>(m, std::min(s.chunk, n), k).template elements<T>();
}

// C = alpha * A * op(B) (update::overwrite) or C += alpha * A * op(B)
// (update::accumulate, the default) on the calling thread.
// Shapes: A [m, k]; op(B) [k, n] (B is [k, n] for transpose::no, [n, k] for
// transpose::yes, the PyTorch Linear weight layout); C [m, n].
// Requires: scratch has scratch_elements<T>(m', n', k') elements for some
// m' >= m, n' >= n, k' >= k, 64-byte aligned;
// C does not overlap A or B. Shapes are the caller's responsibility (checked
// with assertions in debug builds only: this is the innermost loop).
template <class T>
void multiply_add(T alpha, matrix<const T> a, matrix<const T> b, transpose op_b, matrix<T> c,
                  T* scratch, update mode = update::accumulate) {
  const index_t m = c.rows, n = c.cols, k = a.cols;
  eigen_assert(a.rows == m && (op_b == transpose::yes ? b.rows == n && b.cols == k
                                                      : b.rows == k && b.cols == n));
  if (mode == update::overwrite)
    for (index_t i = 0; i < m; ++i) std::fill(c.data + i * c.ld, c.data + i * c.ld + n, T(0));
  if (m == 0 || n == 0 || k == 0) return;
  detail::external_blocking<T> blocking(detail::blocking_for<T>(m, n, k), scratch);
  // Eigen's view: result Cᵀ [n, m] column-major with stride ld_c; lhs op(B)ᵀ [n, k]
  // (row-major B [n, k] when transposed, else column-major); rhs Aᵀ [k, m] column-major.
  using Eigen::ColMajor;
  using Eigen::RowMajor;
  if (op_b == transpose::yes)
    Eigen::internal::general_matrix_matrix_product<Eigen::Index, T, RowMajor, false, T, ColMajor,
                                                   false, ColMajor, 1>::run(n, m, k, b.data, b.ld,
                                                                            a.data, a.ld, c.data,
                                                                            1, c.ld, alpha,
                                                                            blocking);
  else
    Eigen::internal::general_matrix_matrix_product<Eigen::Index, T, ColMajor, false, T, ColMajor,
                                                   false, ColMajor, 1>::run(n, m, k, b.data, b.ld,
                                                                            a.data, a.ld, c.data,
                                                                            1, c.ld, alpha,
                                                                            blocking);
}

// multiply_add split over up to `threads` threads; thread t uses
// scratch + t * scratch_stride. Requires scratch_stride >=
// scratch_elements<T>(m, n, k, threads). Must not be called from inside a
// parallel_for task.
template <class T>
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
      multiply_add(alpha, a.block(begin, rows, 0, k), b, op_b, c.block(begin, rows, 0, n), mine,
                   mode);
    } else {
      const index_t cols = std::min(s.chunk, n - begin);
      const matrix<const T> b_part =
          op_b == transpose::yes ? b.block(begin, cols, 0, k) : b.block(0, k, begin, cols);
      multiply_add(alpha, a, b_part, op_b, c.block(0, m, begin, cols), mine, mode);
    }
  });
}

}  // namespace reuseformer::gemm

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
