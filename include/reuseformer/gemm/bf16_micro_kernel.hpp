#pragma once
// The register tile of the bfloat16 products (bf16_gemm.hpp): C [MR, NR] in
// float accumulators += A [MR, kc] · B [kc, NR], with A and B in bfloat16.
//
// B strips (packed once, bf16_packed_weights.hpp) interleave pairs of
// consecutive depth steps per column, the order vdpbf16ps consumes them: one
// 32-bit lane holds op(B)[2q, j] and op(B)[2q + 1, j] (bf16_strip_index), and
// a depth block is zero-padded to an even depth.
//
// bf16_kernel<Arch> is the build's kernel, chosen at compile time by
// simd::has_bf16_dot<Arch>():
// - AVX512-BF16: A's strip is packed as rounded bf16 rows; each step of two
//   depths broadcasts one pair of A per row and multiplies it into two B
//   vectors with vdpbf16ps (16 lanes x 2 products each), 12 x 2 vectors of
//   accumulators. The only file that names these intrinsics.
// - elsewhere: the panel of B is widened to float (exact) into scratch, A's
//   strip is packed as floats rounded to bf16 values, and the float
//   micro-kernel (micro_kernel.hpp) multiplies them. A product of two bf16
//   values is exact in float, so both paths compute the same sums of the same
//   exact products, differing only in summation order.
// The AVX512-BF16 conversion (vcvtne2ps2bf16) treats subnormal inputs as zero;
// the widening path keeps them (to_bfloat16). Activations of that size
// (< 1.2e-38) contribute nothing measurable next to any normal term.

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "reuseformer/core/bfloat16.hpp"
#include "reuseformer/core/tensor_view.hpp"
#include "reuseformer/core/workspace.hpp"
#include "reuseformer/gemm/matrix.hpp"
#include "reuseformer/gemm/micro_kernel.hpp"
#include "reuseformer/gemm/packing.hpp"
#include "reuseformer/simd/arch.hpp"

#if defined(__AVX512BF16__)
#include <immintrin.h>
#endif

namespace reuseformer::gemm::detail {

// Where op(B)[p, j] sits in a packed bf16 strip of NR columns.
template <index_t NR>
[[nodiscard]] constexpr index_t bf16_strip_index(index_t p, index_t j) {
  return ((p / 2) * NR + j) * 2 + p % 2;
}

template <class Arch, bool Dot = simd::has_bf16_dot<Arch>()>
struct bf16_kernel;

// Widening: the float kernel on bf16 values held as floats.
template <class Arch>
struct bf16_kernel<Arch, false> {
  using shape = tile<float, Arch>;
  static constexpr index_t mr = shape::mr, nr = shape::nr;
  static constexpr index_t depth_step = 2;
  using a_type = float;
  using b_type = float;

  // Scratch (floats) of one thread: B's widened [kpad, nc] panel, then A's strip.
  [[nodiscard]] static index_t scratch_elements(index_t kpad, index_t nc) {
    return round_to_line<float>(kpad * nc) + mr * kpad;
  }
  [[nodiscard]] static a_type* strip_buffer(float* scratch, index_t kpad, index_t nc) {
    return scratch + round_to_line<float>(kpad * nc);
  }

  // dst[p * MR + i] = round(A[i, p]), zero for p >= a.cols (up to kpad) and i >= a.rows.
  static void pack_strip(matrix<const float> a, index_t kpad, float* dst) {
    pack_a<float, Arch, mr>(a, dst);
    for (index_t e = 0; e < a.cols * mr; ++e) dst[e] = round_to_bfloat16(dst[e]);
    std::fill(dst + a.cols * mr, dst + kpad * mr, 0.0F);
  }

  // The packed block's first ceil(ncur / NR) strips of depth kpad, widened
  // into buffer as the float kernel's strips ([kpad][NR] each).
  static const float* panel(const bfloat16* block, index_t kpad, index_t ncur, float* buffer) {
    const index_t strip = kpad * nr;
    for (index_t s = 0; s * nr < ncur; ++s)
      for (index_t p = 0; p < kpad; ++p)
        for (index_t j = 0; j < nr; ++j)
          buffer[s * strip + p * nr + j] = to_float(block[s * strip + bf16_strip_index<nr>(p, j)]);
    return buffer;
  }
  [[nodiscard]] static const float* tile_b(const float* panel, index_t t, index_t kpad) {
    return panel + t * nr * kpad;
  }

  // C[0:rows, 0:cols] = A B or += A B; a from pack_strip, b a strip of panel().
  static void multiply(index_t kpad, const float* a, const float* b, float* c, index_t ldc, index_t rows, index_t cols,
                       update mode) {
    micro_kernel<float, Arch>(kpad, a, b, 1.0F, c, ldc, rows, cols, mode, whole_tile);
  }
};

#if defined(__AVX512BF16__)
// AVX512-BF16: vdpbf16ps on the packed pairs, B read in place.
template <class Arch>
struct bf16_kernel<Arch, true> : short_strip_dispatch<bf16_kernel<Arch, true>> {
  static constexpr index_t mr = 12, vectors = 2, width = 16, nr = vectors * width;
  static constexpr index_t depth_step = 2;
  using a_type = bfloat16;
  using b_type = bfloat16;

  // Scratch (floats) of one thread: A's strip only.
  [[nodiscard]] static index_t scratch_elements(index_t kpad, index_t /*nc*/) { return mr * kpad / 2; }
  [[nodiscard]] static a_type* strip_buffer(float* scratch, index_t, index_t) {
    return reinterpret_cast<bfloat16*>(scratch);
  }

  // dst[i * kpad + p] = round(A[i, p]): MR rows of kpad bf16, zero past a.cols
  // and below a.rows. A row's consecutive pairs are what the kernel broadcasts.
  static void pack_strip(matrix<const float> a, index_t kpad, bfloat16* dst) {
    for (index_t i = 0; i < mr; ++i, dst += kpad) {
      if (i >= a.rows) {
        std::fill(dst, dst + kpad, bfloat16{});
        continue;
      }
      const float* const row = a.data + i * a.ld;
      for (index_t p = 0; p < kpad; p += 2 * width) {
        const auto valid = [&](index_t from) {
          return static_cast<__mmask16>(from >= a.cols ? 0 : (1u << std::min<index_t>(width, a.cols - from)) - 1);
        };
        const __m512 lo = _mm512_maskz_loadu_ps(valid(p), row + p);
        const __m512 hi = _mm512_maskz_loadu_ps(valid(p + width), row + p + width);
        const __m512bh pairs = _mm512_cvtne2ps_pbh(hi, lo);
        const index_t count = std::min<index_t>(2 * width, kpad - p);
        const auto keep = static_cast<__mmask32>(count == 32 ? ~0u : (1u << count) - 1);
        _mm512_mask_storeu_epi16(dst + p, keep, reinterpret_cast<const __m512i&>(pairs));
      }
    }
  }

  static const bfloat16* panel(const bfloat16* block, index_t, index_t, float*) { return block; }
  [[nodiscard]] static const bfloat16* tile_b(const bfloat16* panel, index_t t, index_t kpad) {
    return panel + t * nr * kpad;
  }

  // The tile's first Rows rows of A (rows <= Rows); short_strip_dispatch
  // picks Rows.
  template <index_t Rows>
  static void multiply_rows(index_t kpad, const bfloat16* a, const bfloat16* b, float* c, index_t ldc, index_t rows,
                            index_t cols, update mode) {
    prefetch_tile(c, ldc, rows, cols);
    __m512 acc[Rows][vectors];
#pragma GCC unroll 16
    for (index_t i = 0; i < Rows; ++i)
#pragma GCC unroll 2
      for (index_t v = 0; v < vectors; ++v) acc[i][v] = _mm512_setzero_ps();
    for (index_t p = 0; p < kpad; p += 2, b += 2 * nr) {
      __m512bh bv[vectors];
#pragma GCC unroll 2
      for (index_t v = 0; v < vectors; ++v) bv[v] = reinterpret_cast<const __m512bh*>(b)[v];
#pragma GCC unroll 16
      for (index_t i = 0; i < Rows; ++i) {
        std::int32_t pair;
        std::memcpy(&pair, a + i * kpad + p, sizeof pair);
        const __m512i broadcast = _mm512_set1_epi32(pair);
        const __m512bh ai = reinterpret_cast<const __m512bh&>(broadcast);
#pragma GCC unroll 2
        for (index_t v = 0; v < vectors; ++v) acc[i][v] = _mm512_dpbf16_ps(acc[i][v], ai, bv[v]);
      }
    }
    const bool accumulate = mode == update::accumulate;
    if (rows == Rows && cols == nr) {
#pragma GCC unroll 16
      for (index_t i = 0; i < Rows; ++i)
#pragma GCC unroll 2
        for (index_t v = 0; v < vectors; ++v) {
          float* const out = c + i * ldc + v * width;
          _mm512_storeu_ps(out, accumulate ? _mm512_add_ps(_mm512_loadu_ps(out), acc[i][v]) : acc[i][v]);
        }
      return;
    }
    // Edge tile: through a buffer, storing only the wanted elements.
    alignas(64) float buffer[Rows * nr];
#pragma GCC unroll 16
    for (index_t i = 0; i < Rows; ++i)
#pragma GCC unroll 2
      for (index_t v = 0; v < vectors; ++v) _mm512_store_ps(buffer + i * nr + v * width, acc[i][v]);
    for (index_t i = 0; i < rows; ++i)
      for (index_t j = 0; j < cols; ++j)
        c[i * ldc + j] = accumulate ? c[i * ldc + j] + buffer[i * nr + j] : buffer[i * nr + j];
  }
};
#endif

}  // namespace reuseformer::gemm::detail
