#pragma once
// The register tile of the blocked products in gemm.hpp: an [MR, NR] block of C
// kept in vector registers while a packed strip of A (MR rows) and a packed strip
// of B (NR columns) stream through.
//
// Each step of the inner loop loads NR/width vectors of B, broadcasts MR values
// of A and does MR * NR/width fused multiply-adds, so loads stay below the
// FMA count and the accumulators hide the FMA latency. The tile is as large as
// the architecture's register file allows: 12 x 2 vectors with 32 registers
// (AVX-512), 10 x 2 with 32 on AArch64 NEON, 6 x 2 with 16 (SSE, AVX), 4 x 2
// scalars for the scalar path.
// NEON multiplies by a vector's element (fmla v.4s, v.4s, v.s[0]), and GCC
// loads each of a step's MR values of A into a register of its own instead of
// broadcasting them one at a time: a step holds MR * 2 accumulators, 2 B
// vectors and MR A values. 10 x 2 fills the 32 registers exactly (20 + 2 +
// 10); GCC 12's loop for 12 x 2 spills accumulators to the stack (10 stack
// accesses a step), and 8 x 2 leaves 4 registers idle. Its 20 independent FMA
// chains cover the 4-cycle FMA latency of up to 4 FMA pipes (Neoverse V1/V2:
// 16 in flight), and a step is 20 FMAs against 7 loads (one pair of B
// vectors, A's 10 values in pairs).

#include <algorithm>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "reuseformer/core/tensor_view.hpp"
#include "reuseformer/gemm/matrix.hpp"
#include "reuseformer/simd/arch.hpp"

namespace reuseformer::gemm::detail {

// The few vector operations the kernel needs, for an xsimd architecture and for
// the scalar path (a "vector" of one element), so that one kernel serves both.
template <class T, class Arch>
struct lanes {
  using vector = xsimd::batch<T, Arch>;
  static constexpr index_t width = vector::size;
  // zmm0-31 with AVX-512, v0-v31 on AArch64; 16 with SSE and AVX.
  static constexpr index_t registers = sizeof(vector) == 64 || std::is_base_of_v<xsimd::neon64, Arch> ? 32 : 16;
  static vector load_aligned(const T* p) { return vector::load_aligned(p); }
  static vector load(const T* p) { return vector::load_unaligned(p); }
  static void store(T* p, vector v) { v.store_unaligned(p); }
  static vector fma(vector a, vector b, vector c) { return xsimd::fma(a, b, c); }
};

template <class T>
struct lanes<T, simd::scalar> {
  using vector = T;
  static constexpr index_t width = 1;
  static constexpr index_t registers = 16;
  static T load_aligned(const T* p) { return *p; }
  static T load(const T* p) { return *p; }
  static void store(T* p, T v) { *p = v; }
  static T fma(T a, T b, T c) { return a * b + c; }
};

// MR x NR, NR = vectors * width. Accumulators, the B vectors and one broadcast
// must fit in the register file.
template <class T, class Arch>
struct tile {
  using ops = lanes<T, Arch>;
  static constexpr index_t vectors = 2;
  static constexpr index_t width = ops::width;
  static constexpr index_t nr = vectors * width;
  // A's values in registers at once: one broadcast at a time, or (NEON) all MR.
  static constexpr bool a_by_element = std::is_base_of_v<xsimd::neon64, Arch>;
  static constexpr index_t mr = a_by_element ? 10 : ops::registers == 32 ? 12 : (simd::is_vector_arch<Arch> ? 6 : 4);
  static_assert(mr * vectors + vectors + (a_by_element ? mr : 1) <= ops::registers);
  // Rows of the tile when A is B's own packed panel (a product A Aᵀ): the
  // largest divisor of NR up to MR, so that a strip of rows never straddles two
  // of the panel's strips. Used only where that tile keeps 16 accumulators (two
  // FMA pipes of latency 4, twice over): with 16 registers it would be at most
  // 4 x 2 vectors (8 accumulators), and packing A for 6 x 2 tiles was faster
  // (measured: bench/README.md).
  static constexpr index_t self_mr = [] {
    index_t rows = mr;
    while (nr % rows != 0) --rows;
    return rows;
  }();
  static constexpr bool reads_a_from_b = self_mr * vectors >= 16;
};

// B's strip streams from L2 (A's stays in L1): each step fetches the B vectors
// this many steps ahead into L1, so that their loads do not wait on L2.
inline constexpr index_t prefetch_steps = 8;

// The LDA of a kernel that reads the rows of A in place (row i at a + i * a_ld,
// its depth steps adjacent) instead of a packed strip.
inline constexpr index_t in_place = 0;

// The rows of the tile a last strip of at most that many rows runs on, for
// strips of `rows`: two thirds (8 of 12 with AVX-512, still 16 accumulators),
// rather than multiply-adding zero padding rows (m = 128 is 10 x 12 + 8).
[[nodiscard]] constexpr index_t short_strip_rows(index_t rows) { return rows * 2 / 3; }

// The narrow-weight kernels' entry (bf16_micro_kernel.hpp,
// int8_micro_kernel.hpp): a short last strip runs the shorter tile, as the
// float products' do. Kernel provides mr and multiply_rows<Rows>(kpad, a, b,
// c, ldc, rows, cols, mode) for the tile's first Rows rows of A (rows <= Rows).
template <class Kernel>
struct short_strip_dispatch {
  template <class A, class B>
  static void multiply(index_t kpad, const A* a, const B* b, float* c, index_t ldc, index_t rows, index_t cols,
                       update mode) {
    constexpr index_t short_rows = short_strip_rows(Kernel::mr);
    if (rows <= short_rows)
      Kernel::template multiply_rows<short_rows>(kpad, a, b, c, ldc, rows, cols, mode);
    else
      Kernel::template multiply_rows<Kernel::mr>(kpad, a, b, c, ldc, rows, cols, mode);
  }
};

// No lower-triangle restriction: every element of the tile is stored.
inline constexpr index_t whole_tile = std::numeric_limits<index_t>::max();

// C's tile is read (accumulate) or written only after a kernel's kc steps;
// fetching it first hides the miss of a C too large for the caches (thousands
// of rows) behind those steps.
template <class T>
void prefetch_tile(T* c, index_t ldc, index_t rows, index_t cols) {
  for (index_t i = 0; i < rows && cols > 0; ++i) {
    const auto first = reinterpret_cast<std::uintptr_t>(c + i * ldc), last = first + (cols - 1) * sizeof(T);
    for (std::uintptr_t line = first / 64 * 64; line <= last; line += 64)
      __builtin_prefetch(reinterpret_cast<const void*>(line), 1, 3);
  }
}

// C[0:rows, 0:cols] = alpha * A B (update::overwrite) or += (update::accumulate),
// where A is an MR-row strip stored as a[p * LDA + i] (LDA = MR: packed by
// pack_a; LDA = NR: rows of B's own packed panel) or as a[i * a_ld + p]
// (LDA = in_place: MR rows of a row-major A, all of them readable), and B an
// NR-column strip packed as b[p * NR + j], p < kc; a packed A and B are
// zero-padded to the full tile.
// `lower` restricts the store to j <= i + lower (the tile's offset from the
// diagonal of a lower-triangular result), or is whole_tile. NV < vectors uses
// only the strip's first NV vectors of columns: a tile the diagonal crosses
// within its first vector then does half the multiply-adds.
// Requires: b aligned to the vector width; rows <= MR, cols <= NV * width.
template <class T, class Arch, index_t NV = tile<T, Arch>::vectors, index_t MR = tile<T, Arch>::mr, index_t LDA = MR>
void micro_kernel(index_t kc, const T* a, const T* b, T alpha, T* c, index_t ldc, index_t rows, index_t cols,
                  update mode, index_t lower, index_t a_ld = 0) {
  const bool accumulate = mode == update::accumulate;
  using shape = tile<T, Arch>;
  using ops = typename shape::ops;
  using V = typename ops::vector;
  constexpr index_t W = shape::width, NR = shape::nr, columns = NV * W;
  static_assert(NV >= 1 && NV <= shape::vectors && MR >= 1 && MR <= shape::mr);

  prefetch_tile(c, ldc, rows, cols);

  V acc[MR][NV];
#pragma GCC unroll 16
  for (index_t i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (index_t v = 0; v < NV; ++v) acc[i][v] = V(T(0));

  // In place, every third row is a base pointer and the two after it are the
  // base plus one or two strides: three registers' addressing for each.
  constexpr index_t bases = LDA == in_place ? ceil_div(MR, 3) : 1;
  const T* row[bases];
  for (index_t g = 0; g < bases; ++g) row[g] = a + 3 * g * a_ld;
  const auto element = [&](index_t i, index_t p) { return LDA == in_place ? row[i / 3][i % 3 * a_ld + p] : a[i]; };

  for (index_t p = 0; p < kc; ++p, a += LDA, b += NR) {
    V bv[NV];
#pragma GCC unroll 4
    for (index_t v = 0; v < NV; ++v) {
      __builtin_prefetch(b + prefetch_steps * NR + v * W, 0, 3);
      bv[v] = ops::load_aligned(b + v * W);
    }
#pragma GCC unroll 16
    for (index_t i = 0; i < MR; ++i) {
      const V ai(element(i, p));
#pragma GCC unroll 4
      for (index_t v = 0; v < NV; ++v) acc[i][v] = ops::fma(ai, bv[v], acc[i][v]);
    }
  }

  const V scale(alpha);
  if (rows == MR && cols == columns && lower >= columns - 1) {
#pragma GCC unroll 16
    for (index_t i = 0; i < MR; ++i)
#pragma GCC unroll 4
      for (index_t v = 0; v < NV; ++v) {
        T* const out = c + i * ldc + v * W;
        ops::store(out, accumulate ? ops::fma(acc[i][v], scale, ops::load(out)) : acc[i][v] * scale);
      }
    return;
  }
  // Edge or diagonal tile: through a buffer, storing only the wanted elements.
  alignas(64) T buffer[MR * columns];
  // Unrolled like the loops above, so that the accumulators stay in registers.
#pragma GCC unroll 16
  for (index_t i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (index_t v = 0; v < NV; ++v) ops::store(buffer + i * columns + v * W, acc[i][v] * scale);
  for (index_t i = 0; i < rows; ++i) {
    const index_t end = lower == whole_tile ? cols : std::min(cols, std::max<index_t>(i + lower + 1, 0));
    T* const out = c + i * ldc;
    for (index_t j = 0; j < end; ++j) out[j] = accumulate ? out[j] + buffer[i * columns + j] : buffer[i * columns + j];
  }
}

}  // namespace reuseformer::gemm::detail
