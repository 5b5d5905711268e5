#pragma once
// bfloat16: the upper 16 bits of an IEEE binary32 (1 sign, 8 exponent, 7
// stored mantissa bits: 8 significant bits), the storage type of the bf16
// product backend (layers/bf16_products.hpp) and of BF16 safetensors.
//
// Widening to float is exact (the low 16 bits become zero). Narrowing rounds to
// nearest, ties to even, as PyTorch's float -> bfloat16 conversion and the
// AVX512-BF16 instructions do: relative error at most 2^-9 for normal values.
// NaNs stay NaN (quieted, sign kept); values beyond the largest bfloat16 round
// to infinity.

#include <bit>
#include <cstdint>

namespace reuseformer {

struct bfloat16 {
  std::uint16_t bits = 0;
  friend constexpr bool operator==(bfloat16, bfloat16) = default;
};

[[nodiscard]] constexpr float to_float(bfloat16 x) { return std::bit_cast<float>(std::uint32_t{x.bits} << 16); }

[[nodiscard]] constexpr bfloat16 to_bfloat16(float x) {
  const std::uint32_t u = std::bit_cast<std::uint32_t>(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return {static_cast<std::uint16_t>((u >> 16) | 0x40u)};
  // Adding 0x7fff plus the lowest kept bit carries into the kept bits exactly
  // when the dropped half is above one half, or equal to it with an odd kept part.
  return {static_cast<std::uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16)};
}

// x rounded to the nearest bfloat16, as a float.
[[nodiscard]] constexpr float round_to_bfloat16(float x) { return to_float(to_bfloat16(x)); }

}  // namespace reuseformer
