#pragma once
// Matrix transpose of a block, dst[j, i] = src[i, j] (the GEMM's packing, the
// mirror that completes a symmetric product), and the mirror of a lower
// triangle onto the upper one.
//
// Element by element a transpose costs about one cycle per value (a strided
// load and a store each), a sizeable fraction of the products it serves.
// Transposing 8 x 8 (AVX) or 4 x 4 (SSE, NEON) tiles in registers moves whole
// vectors instead.
// xsimd 8 has no transpose. The 4 x 4 tile is two rounds of its zip_lo/zip_hi
// on 128-bit vectors, for every architecture that has them; its AVX zip_lo and
// zip_hi work per 128-bit lane, so the 8 x 8 tile uses the AVX intrinsics the
// architecture tag guarantees (x86 only, behind XSIMD_WITH_AVX).

#include <algorithm>
#include <type_traits>

#include "reuseformer/core/tensor_view.hpp"
#include "reuseformer/simd/arch.hpp"

namespace reuseformer::simd {

namespace reference {

// dst[j * dst_ld + i] = src[i * src_ld + j] for i < rows, j < cols.
template <class T>
void transpose(const T* src, index_t src_ld, T* dst, index_t dst_ld, index_t rows, index_t cols) {
  for (index_t i = 0; i < rows; ++i)
    for (index_t j = 0; j < cols; ++j) dst[j * dst_ld + i] = src[i * src_ld + j];
}

}  // namespace reference

namespace detail {

#if XSIMD_WITH_AVX
// One 8 x 8 float tile through registers: unpack pairs, then quads, then swap
// 128-bit halves (the classic AVX transpose).
inline void transpose8x8(const float* src, index_t src_ld, float* dst, index_t dst_ld) {
  __m256 r[8], t[8];
  for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + i * src_ld);
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    r[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
    r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
    r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  for (int i = 0; i < 4; ++i) {
    _mm256_storeu_ps(dst + i * dst_ld, _mm256_permute2f128_ps(r[i], r[i + 4], 0x20));
    _mm256_storeu_ps(dst + (i + 4) * dst_ld, _mm256_permute2f128_ps(r[i], r[i + 4], 0x31));
  }
}
#endif

// The build's architecture of 128-bit float vectors, if any: SSE2 on x86-64
// (also under AVX, for the 4 x 4 edges of 8 x 8 tiles), NEON on AArch64.
#if XSIMD_WITH_SSE2
using arch128 = xsimd::sse2;
#elif XSIMD_WITH_NEON64
using arch128 = xsimd::neon64;
#endif
inline constexpr bool has_arch128 = XSIMD_WITH_SSE2 || XSIMD_WITH_NEON64;

#if XSIMD_WITH_SSE2 || XSIMD_WITH_NEON64
// One 4 x 4 float tile: interleaving rows 0/2 and 1/3 gives the columns'
// halves, interleaving those the columns.
inline void transpose4x4(const float* src, index_t src_ld, float* dst, index_t dst_ld) {
  using V = xsimd::batch<float, arch128>;
  const V r0 = V::load_unaligned(src), r1 = V::load_unaligned(src + src_ld), r2 = V::load_unaligned(src + 2 * src_ld),
          r3 = V::load_unaligned(src + 3 * src_ld);
  const V t0 = xsimd::zip_lo(r0, r2), t1 = xsimd::zip_hi(r0, r2);  // a0 c0 a1 c1 | a2 c2 a3 c3
  const V t2 = xsimd::zip_lo(r1, r3), t3 = xsimd::zip_hi(r1, r3);  // b0 d0 b1 d1 | b2 d2 b3 d3
  xsimd::zip_lo(t0, t2).store_unaligned(dst);
  xsimd::zip_hi(t0, t2).store_unaligned(dst + dst_ld);
  xsimd::zip_lo(t1, t3).store_unaligned(dst + 2 * dst_ld);
  xsimd::zip_hi(t1, t3).store_unaligned(dst + 3 * dst_ld);
}
#endif

// Whole tiles of `tile` x `tile`, then the ragged right and bottom edges with
// the next smaller tile (8 -> 4 -> elements): a 12-row block is one band of
// 8 x 8 tiles and one of 4 x 4, not 4 rows element by element.
template <index_t tile, class T>
void transpose_tiles(const T* src, index_t src_ld, T* dst, index_t dst_ld, index_t rows, index_t cols) {
  if constexpr (tile == 0) {
    reference::transpose(src, src_ld, dst, dst_ld, rows, cols);
  } else {
    const index_t full_rows = rows / tile * tile, full_cols = cols / tile * tile;
    for (index_t i = 0; i < full_rows; i += tile)
      for (index_t j = 0; j < full_cols; j += tile) {
#if XSIMD_WITH_AVX
        if constexpr (tile == 8) detail::transpose8x8(src + i * src_ld + j, src_ld, dst + j * dst_ld + i, dst_ld);
#endif
#if XSIMD_WITH_SSE2 || XSIMD_WITH_NEON64
        if constexpr (tile == 4) detail::transpose4x4(src + i * src_ld + j, src_ld, dst + j * dst_ld + i, dst_ld);
#endif
      }
    constexpr index_t smaller = tile == 8 && has_arch128 ? 4 : 0;
    transpose_tiles<smaller>(src + full_cols, src_ld, dst + full_cols * dst_ld, dst_ld, rows, cols - full_cols);
    transpose_tiles<smaller>(src + full_rows * src_ld, src_ld, dst + full_rows, dst_ld, rows - full_rows, full_cols);
  }
}

template <class T, class Arch>
  requires std::is_arithmetic_v<T>
constexpr index_t tile_size() {
  if constexpr (!std::is_same_v<T, float> || !is_vector_arch<Arch>) {
    return 0;
  } else {
#if XSIMD_WITH_AVX
    if constexpr (std::is_base_of_v<xsimd::avx, Arch> || std::is_base_of_v<xsimd::avx512f, Arch>) return 8;
#endif
    if constexpr (std::is_base_of_v<xsimd::sse2, Arch> || std::is_base_of_v<xsimd::neon64, Arch>) return 4;
    return 0;
  }
}

}  // namespace detail

// The side of the register tiles transpose() moves for T on `Arch`: 8 (AVX and
// up, float), 4 (SSE2 and NEON, float), or 0 (none: element by element).
template <class T, class Arch>
inline constexpr index_t transpose_tile = detail::tile_size<T, Arch>();

// dst[j * dst_ld + i] = src[i * src_ld + j] for i < rows, j < cols.
// Requires: src and dst do not overlap.
template <class T, class Arch>
void transpose(const T* src, index_t src_ld, T* dst, index_t dst_ld, index_t rows, index_t cols) {
  detail::transpose_tiles<transpose_tile<T, Arch>>(src, src_ld, dst, dst_ld, rows, cols);
}

// C[i, j] = C[j, i] for j > i: completes a symmetric [n, n] block (row stride
// ld) from its lower triangle. Tile by tile: the 8 x 8 tiles off the diagonal
// go through transpose(), only the diagonal tiles element by element.
template <class T, class Arch>
void mirror_lower(T* c, index_t n, index_t ld) {
  constexpr index_t tile = 8;
  for (index_t i0 = 0; i0 < n; i0 += tile) {
    const index_t rows = std::min(tile, n - i0);
    for (index_t i = i0; i < i0 + rows; ++i)  // the diagonal tile mirrors onto itself
      for (index_t j = i + 1; j < i0 + rows; ++j) c[i * ld + j] = c[j * ld + i];
    for (index_t j0 = i0 + tile; j0 < n; j0 += tile)
      transpose<T, Arch>(c + j0 * ld + i0, ld, c + i0 * ld + j0, ld, std::min(tile, n - j0), rows);
  }
}

}  // namespace reuseformer::simd
