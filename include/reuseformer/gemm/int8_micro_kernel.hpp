#pragma once
// The register tile of the int8 products (int8_gemm.hpp): C [MR, NR] (float)
// from A [MR, kpad] (u8 rows with their scale and zero point) and B [kpad, NR]
// (s8 columns with their scale and sum), the products summed exactly in 32-bit
// integers and dequantized as the tile is stored:
//   C[i, j] = float(Σ_p a[i, p] b[p, j] - zero_point_i · colsum_j) · (scale_i · scale_j)
//   (update::accumulate: fma of the same two factors onto C[i, j]).
// The sums are exact (|Σ| <= 255 · 128 · kpad < 2^31 for kpad <= 65536,
// int8_max_depth, whatever int8 weights a checkpoint holds), so every kernel
// gives the same values bit for bit.
//
// B strips (packed once, int8_packed_weights.hpp) hold their NR column scales
// (float) and NR column sums (int32), then the values with groups of four
// consecutive depth steps per column (int8_strip_index), the operand order of
// vpdpbusd; the depth is zero-padded to a multiple of 4. An A strip holds MR
// rows of kpad u8, then MR row scales (float) and MR zero points (int32).
//
// int8_kernel<Arch> is the build's kernel, chosen by simd::has_int8_dot<Arch>():
// - AVX512-VNNI: vpdpbusd, 12 x 2 vectors of 16 int32 accumulators. The only
//   file that names it.
// - elsewhere: the same sums in portable code (int32 multiply-adds the
//   compiler vectorizes as it can), on the float tile's shape.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "reuseformer/core/tensor_view.hpp"
#include "reuseformer/gemm/int8_quantization.hpp"
#include "reuseformer/gemm/matrix.hpp"
#include "reuseformer/gemm/micro_kernel.hpp"
#include "reuseformer/simd/arch.hpp"

#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
#include <immintrin.h>
#endif

namespace reuseformer::gemm::detail {

// The deepest product whose 32-bit sums cannot overflow.
inline constexpr index_t int8_max_depth = 65536;

// Where op(B)[p, j] sits among a packed int8 strip's values of NR columns.
template <index_t NR>
[[nodiscard]] constexpr index_t int8_strip_index(index_t p, index_t j) {
  return ((p / 4) * NR + j) * 4 + p % 4;
}

// The strips both kernels read, and A's packing (the activations' quantization).
template <index_t MR, index_t NR>
struct int8_strips {
  static constexpr index_t mr = MR, nr = NR, depth_step = 4;
  using a_type = std::uint8_t;
  using b_type = std::int8_t;
  // A B strip: NR float scales, NR int32 sums, then the values.
  static constexpr index_t header_bytes = NR * 8;
  [[nodiscard]] static constexpr index_t strip_bytes(index_t kpad) { return header_bytes + kpad * NR; }

  // Scratch (floats) of one thread: A's strip only; B is read in place.
  [[nodiscard]] static index_t scratch_elements(index_t kpad, index_t /*nc*/) {
    return ceil_div(MR * kpad + 8 * MR, 4);
  }
  [[nodiscard]] static a_type* strip_buffer(float* scratch, index_t, index_t) {
    return reinterpret_cast<std::uint8_t*>(scratch);
  }

  // A's rows quantized (int8_quantization.hpp): MR rows of kpad u8, zero past
  // a.cols; rows past a.rows zero with scale 0. Then the scales, zero points.
  static void pack_strip(matrix<const float> a, index_t kpad, std::uint8_t* dst) {
    float scales[MR] = {};
    std::int32_t zero_points[MR] = {};
    for (index_t i = 0; i < MR; ++i) {
      std::uint8_t* const row = dst + i * kpad;
      index_t filled = 0;
      if (i < a.rows) {
        const row_quantization q = quantize_row(a.data + i * a.ld, a.cols, row);
        scales[i] = q.scale;
        zero_points[i] = q.zero_point;
        filled = a.cols;
      }
      std::fill(row + filled, row + kpad, std::uint8_t{0});
    }
    std::memcpy(dst + MR * kpad, scales, sizeof scales);
    std::memcpy(dst + MR * kpad + sizeof scales, zero_points, sizeof zero_points);
  }

  static const std::int8_t* panel(const std::int8_t* block, index_t, index_t, float*) { return block; }
  [[nodiscard]] static const std::int8_t* tile_b(const std::int8_t* panel, index_t t, index_t kpad) {
    return panel + t * strip_bytes(kpad);
  }
};

template <class Arch, bool Dot = simd::has_int8_dot<Arch>()>
struct int8_kernel;

// Portable: 32-bit sums on the float tile's shape.
template <class Arch>
struct int8_kernel<Arch, false> : int8_strips<tile<float, Arch>::mr, tile<float, Arch>::nr> {
  using base = int8_strips<tile<float, Arch>::mr, tile<float, Arch>::nr>;
  using base::mr, base::nr, base::header_bytes;

  // C[0:rows, 0:cols] from the strip a (pack_strip) and the B strip b.
  static void multiply(index_t kpad, const std::uint8_t* a, const std::int8_t* b, float* c, index_t ldc, index_t rows,
                       index_t cols, update mode) {
    std::int32_t acc[mr][nr] = {};
    const std::int8_t* values = b + header_bytes;
    for (index_t p = 0; p < kpad; p += 4, values += 4 * nr)
      for (index_t i = 0; i < rows; ++i) {
        const std::uint8_t* const ai = a + i * kpad + p;
        for (index_t j = 0; j < nr; ++j) {
          const std::int8_t* const bj = values + 4 * j;
          acc[i][j] += ai[0] * bj[0] + ai[1] * bj[1] + ai[2] * bj[2] + ai[3] * bj[3];
        }
      }
    float row_scales[mr], col_scales[nr];
    std::int32_t zero_points[mr], col_sums[nr];
    std::memcpy(row_scales, a + mr * kpad, sizeof row_scales);
    std::memcpy(zero_points, a + mr * kpad + sizeof row_scales, sizeof zero_points);
    std::memcpy(col_scales, b, sizeof col_scales);
    std::memcpy(col_sums, b + sizeof col_scales, sizeof col_sums);
    for (index_t i = 0; i < rows; ++i)
      for (index_t j = 0; j < cols; ++j) {
        const float sum = static_cast<float>(acc[i][j] - zero_points[i] * col_sums[j]);
        const float scale = row_scales[i] * col_scales[j];
        float& out = c[i * ldc + j];
        out = mode == update::accumulate ? std::fma(sum, scale, out) : sum * scale;
      }
  }
};

#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
// AVX512-VNNI: vpdpbusd on the packed groups of four, B read in place.
template <class Arch>
struct int8_kernel<Arch, true> : int8_strips<12, 32>, short_strip_dispatch<int8_kernel<Arch, true>> {
  static constexpr index_t vectors = 2, width = 16;

  // The tile's first Rows rows of A (rows <= Rows); short_strip_dispatch
  // picks Rows.
  template <index_t Rows>
  static void multiply_rows(index_t kpad, const std::uint8_t* a, const std::int8_t* b, float* c, index_t ldc,
                            index_t rows, index_t cols, update mode) {
    prefetch_tile(c, ldc, rows, cols);
    __m512i acc[Rows][vectors];
#pragma GCC unroll 16
    for (index_t i = 0; i < Rows; ++i)
#pragma GCC unroll 2
      for (index_t v = 0; v < vectors; ++v) acc[i][v] = _mm512_setzero_si512();
    const std::int8_t* values = b + header_bytes;
    for (index_t p = 0; p < kpad; p += 4, values += 4 * nr) {
      __m512i bv[vectors];
#pragma GCC unroll 2
      for (index_t v = 0; v < vectors; ++v) bv[v] = _mm512_load_si512(values + v * 64);
#pragma GCC unroll 16
      for (index_t i = 0; i < Rows; ++i) {
        std::int32_t quad;
        std::memcpy(&quad, a + i * kpad + p, sizeof quad);
        const __m512i ai = _mm512_set1_epi32(quad);
#pragma GCC unroll 2
        for (index_t v = 0; v < vectors; ++v) acc[i][v] = _mm512_dpbusd_epi32(acc[i][v], ai, bv[v]);
      }
    }
    // Dequantized as stored: the scalar kernel's formula, 16 columns at a time.
    const std::uint8_t* const row_info = a + mr * kpad;
    __m512 col_scales[vectors];
    __m512i col_sums[vectors];
    __mmask16 keep[vectors];
#pragma GCC unroll 2
    for (index_t v = 0; v < vectors; ++v) {
      col_scales[v] = _mm512_loadu_ps(b + v * width * 4);
      col_sums[v] = _mm512_loadu_si512(b + nr * 4 + v * width * 4);
      const index_t n = std::clamp<index_t>(cols - v * width, 0, width);
      keep[v] = static_cast<__mmask16>((1u << n) - 1);
    }
    const bool accumulate = mode == update::accumulate;
#pragma GCC unroll 16
    for (index_t i = 0; i < Rows; ++i) {
      if (i >= rows) break;
      float row_scale;
      std::int32_t zero_point;
      std::memcpy(&row_scale, row_info + i * 4, 4);
      std::memcpy(&zero_point, row_info + mr * 4 + i * 4, 4);
      const __m512 rs = _mm512_set1_ps(row_scale);
      const __m512i zp = _mm512_set1_epi32(zero_point);
#pragma GCC unroll 2
      for (index_t v = 0; v < vectors; ++v) {
        const __m512 sum = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc[i][v], _mm512_mullo_epi32(zp, col_sums[v])));
        const __m512 scale = _mm512_mul_ps(rs, col_scales[v]);
        float* const out = c + i * ldc + v * width;
        const __m512 result =
            accumulate ? _mm512_fmadd_ps(sum, scale, _mm512_maskz_loadu_ps(keep[v], out)) : _mm512_mul_ps(sum, scale);
        _mm512_mask_storeu_ps(out, keep[v], result);
      }
    }
  }
};
#endif

}  // namespace reuseformer::gemm::detail
