#pragma once
// The quantization of the int8 products (int8_gemm.hpp): how a float weight
// becomes int8 once, when it is packed, and a float activation becomes 8 bits
// each time it is packed for the kernel. Both are pure functions of their
// inputs, so a reference given the same inputs reproduces them exactly.
//
// Weights: symmetric int8 per output column, w ≈ q · scale with
// scale = max |w| / 127 and q = round(w / scale) in [-127, 127] (-128 is never
// produced: the grid is symmetric about 0; the kernels take it all the same,
// as a checkpoint's int8 weights may hold it: int8_micro_kernel.hpp).
//
// Activations: unsigned 8 bits with a zero point, per row (token):
// x ≈ (q - zero_point) · scale, scale = (max - min) / 255 over the row with
// min <= 0 <= max (so 0 is exact), zero_point = round(-min / scale), q =
// clamp(round(x / scale) + zero_point, 0, 255): ONNX Runtime's
// DynamicQuantizeLinear, applied to each row instead of the whole tensor.
// Why u8 with a zero point rather than s8 symmetric (|x| / 127, shifted by 128
// for vpdpbusd's unsigned operand, the "sign trick"): both cost the same in
// the kernel, since either needs the column sums to undo an offset
// (Σ (q - z) w = Σ q w - z Σ w). But a symmetric grid spends half its 255
// levels on the sign: a row whose values are mostly of one sign (the
// GELU outputs that feed the second FFN product lie in [-0.17, ∞)) gets
// almost twice the resolution from an asymmetric one, and a symmetric row
// loses nothing (its zero point is 127 or 128, a step of 2 max / 255 instead
// of max / 127).
// Rounding is to nearest, ties to even (nearbyint in the default rounding
// mode, as vcvtps2dq does). Inputs must be finite.

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "reuseformer/core/tensor_view.hpp"
#include "reuseformer/simd/arch.hpp"

#if defined(__AVX512BW__)
#include <immintrin.h>
#endif

namespace reuseformer::gemm {

// How one row of activations is quantized. scale = 0 (and q = 0) for a row
// of zeros.
struct row_quantization {
  float scale = 0;
  float inverse = 0;  // 1 / scale, what the values are multiplied by
  std::int32_t zero_point = 0;
};

// The quantization of a row whose least and greatest values are lo and hi.
[[nodiscard]] inline row_quantization row_quantization_of(float lo, float hi) {
  lo = std::min(lo, 0.0F);
  hi = std::max(hi, 0.0F);
  const float scale = (hi - lo) / 255.0F;
  if (!(scale > 0)) return {};
  const float inverse = 1.0F / scale;
  const float zero_point = std::clamp(std::nearbyint(-lo * inverse), 0.0F, 255.0F);
  return {scale, inverse, static_cast<std::int32_t>(zero_point)};
}

// One activation, quantized.
[[nodiscard]] inline std::uint8_t quantize(float x, const row_quantization& q) {
  const auto level = static_cast<std::int32_t>(std::nearbyint(x * q.inverse)) + q.zero_point;
  return static_cast<std::uint8_t>(std::clamp<std::int32_t>(level, 0, 255));
}

// Quantizes x[0, k) into q[0, k) and returns how. With AVX-512 (BW) 16 at a
// time; the same values either way.
[[nodiscard]] inline row_quantization quantize_row(const float* x, index_t k, std::uint8_t* q) {
#if defined(__AVX512BW__)
  constexpr index_t w = 16;
  const auto valid = [&](index_t p) { return static_cast<__mmask16>(k - p >= w ? 0xffff : (1u << (k - p)) - 1); };
  __m512 lo = _mm512_setzero_ps(), hi = lo;  // masked-off lanes read 0, which the range includes anyway
  for (index_t p = 0; p < k; p += w) {
    const __m512 v = _mm512_maskz_loadu_ps(valid(p), x + p);
    lo = _mm512_min_ps(lo, v);
    hi = _mm512_max_ps(hi, v);
  }
  const row_quantization r = row_quantization_of(_mm512_reduce_min_ps(lo), _mm512_reduce_max_ps(hi));
  const __m512 inverse = _mm512_set1_ps(r.inverse);
  const __m512i zero_point = _mm512_set1_epi32(r.zero_point), top = _mm512_set1_epi32(255);
  for (index_t p = 0; p < k; p += w) {
    const __m512i level = _mm512_add_epi32(
        _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_maskz_loadu_ps(valid(p), x + p), inverse)), zero_point);
    const __m512i clamped = _mm512_min_epi32(_mm512_max_epi32(level, _mm512_setzero_si512()), top);
    _mm512_mask_cvtepi32_storeu_epi8(q + p, valid(p), clamped);
  }
  return r;
#else
  float lo = 0, hi = 0;
  for (index_t p = 0; p < k; ++p) {
    lo = std::min(lo, x[p]);
    hi = std::max(hi, x[p]);
  }
  const row_quantization r = row_quantization_of(lo, hi);
  for (index_t p = 0; p < k; ++p) q[p] = quantize(x[p], r);
  return r;
#endif
}

// How one column of a weight is quantized: its scale (0 for a column of zeros).
[[nodiscard]] inline float column_scale(float max_abs) { return max_abs / 127.0F; }

[[nodiscard]] inline std::int8_t quantize_weight(float w, float scale) {
  if (!(scale > 0)) return 0;
  return static_cast<std::int8_t>(std::clamp(std::nearbyint(w / scale), -127.0F, 127.0F));
}

}  // namespace reuseformer::gemm
