#pragma once
// The element types of the safetensors format, their sizes, and the decoding of
// the two 16-bit float encodings (IEEE binary16 "F16" and bfloat16 "BF16").

#include <algorithm>
#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "reuseformer/core/bfloat16.hpp"
#include "reuseformer/core/error.hpp"
#include "reuseformer/core/tensor_view.hpp"

namespace reuseformer::io {

// Every dtype of the safetensors specification with a whole-byte element size.
// Files holding any of them open; load<T> converts the floating-point ones and
// load_integers the integer ones (safetensors_reader.hpp).
enum class dtype : std::uint8_t { BOOL, U8, I8, F8_E5M2, F8_E4M3, I16, U16, F16, BF16, I32, U32, F32, I64, U64, F64 };

}  // namespace reuseformer::io

namespace reuseformer::detail {
struct dtype_entry {
  io::dtype type;
  std::string_view name;
  std::size_t size;
};
inline constexpr std::array<dtype_entry, 15> dtype_table = [] {
  using enum io::dtype;
  return std::array<dtype_entry, 15>{{
      {BOOL, "BOOL", 1},
      {U8, "U8", 1},
      {I8, "I8", 1},
      {F8_E5M2, "F8_E5M2", 1},
      {F8_E4M3, "F8_E4M3", 1},
      {I16, "I16", 2},
      {U16, "U16", 2},
      {F16, "F16", 2},
      {BF16, "BF16", 2},
      {I32, "I32", 4},
      {U32, "U32", 4},
      {F32, "F32", 4},
      {I64, "I64", 8},
      {U64, "U64", 8},
      {F64, "F64", 8},
  }};
}();
static_assert(
    [] {
      for (std::size_t i = 0; i < dtype_table.size(); ++i)
        if (dtype_table[i].type != static_cast<io::dtype>(i)) return false;
      return true;
    }(),
    "dtype_table must list the dtypes in enum order: name() and size_in_bytes() index it");
}  // namespace reuseformer::detail

namespace reuseformer::io {

// The name the format spells, e.g. "BF16".
[[nodiscard]] constexpr std::string_view name(dtype type) {
  return detail::dtype_table[static_cast<std::size_t>(type)].name;
}

// Bytes per element.
[[nodiscard]] constexpr std::size_t size_in_bytes(dtype type) {
  return detail::dtype_table[static_cast<std::size_t>(type)].size;
}

// The dtype a header names, or nullopt when the name is not one of the format's.
[[nodiscard]] constexpr std::optional<dtype> parse_dtype(std::string_view text) {
  for (const detail::dtype_entry& e : detail::dtype_table)
    if (e.name == text) return e.type;
  return std::nullopt;
}

// The dtype that stores C++ type T: the writer's typed entries use it.
template <class T>
inline constexpr dtype dtype_of = [] {
  static_assert(sizeof(T) == 0, "dtype_of<T>: T has no safetensors dtype");
  return dtype::BOOL;
}();
template <>
inline constexpr dtype dtype_of<std::uint8_t> = dtype::U8;
template <>
inline constexpr dtype dtype_of<std::int8_t> = dtype::I8;
template <>
inline constexpr dtype dtype_of<std::int16_t> = dtype::I16;
template <>
inline constexpr dtype dtype_of<std::uint16_t> = dtype::U16;
template <>
inline constexpr dtype dtype_of<std::int32_t> = dtype::I32;
template <>
inline constexpr dtype dtype_of<std::uint32_t> = dtype::U32;
template <>
inline constexpr dtype dtype_of<float> = dtype::F32;
template <>
inline constexpr dtype dtype_of<std::int64_t> = dtype::I64;
template <>
inline constexpr dtype dtype_of<std::uint64_t> = dtype::U64;
template <>
inline constexpr dtype dtype_of<double> = dtype::F64;
template <>
inline constexpr dtype dtype_of<bfloat16> = dtype::BF16;

// Bytes a tensor of `shape` (every extent >= 0) and `type` occupies, or nullopt
// when that exceeds 2^64 - 1. Headers are untrusted, so the product is checked;
// an extent of 0 makes it 0 however large the others are.
[[nodiscard]] inline std::optional<std::uint64_t> byte_count(dtype type, std::span<const index_t> shape) {
  std::uint64_t bytes = size_in_bytes(type);
  bool overflow = false;
  for (const index_t extent : shape) {
    if (extent == 0) return 0;
    overflow = overflow || __builtin_mul_overflow(bytes, static_cast<std::uint64_t>(extent), &bytes);
  }
  if (overflow) return std::nullopt;
  return bytes;
}

// Element count of a validated shape. An extent of 0 makes it 0 without
// multiplying the others, whose product may not fit in index_t.
[[nodiscard]] inline index_t element_count(std::span<const index_t> shape) {
  if (std::ranges::find(shape, index_t{0}) != shape.end()) return 0;
  index_t count = 1;
  for (const index_t extent : shape) count *= extent;
  return count;
}

// IEEE binary16 → float, exact for every input: subnormals (exponent 0) become
// normal floats, infinities stay infinite and NaNs keep sign and payload.
[[nodiscard]] constexpr float f16_to_float(std::uint16_t bits) {
  const std::uint32_t sign = static_cast<std::uint32_t>(bits & 0x8000u) << 16;
  const std::uint32_t exponent = (bits >> 10) & 0x1fu;
  const std::uint32_t mantissa = bits & 0x3ffu;
  if (exponent == 0) {  // ±0 or subnormal: mantissa · 2^-24, exact in float
    const float magnitude = static_cast<float>(mantissa) * 0x1p-24f;
    return std::bit_cast<float>(std::bit_cast<std::uint32_t>(magnitude) | sign);
  }
  // Rebias 15 → 127; the all-ones exponent (inf, NaN) maps to float's all-ones.
  const std::uint32_t float_exponent = exponent == 0x1fu ? 0xffu : exponent + 112u;
  return std::bit_cast<float>(sign | float_exponent << 23 | mantissa << 13);
}

// bfloat16 → float: bfloat16 is the upper half of a float, so this is exact
// for every input, special values included.
[[nodiscard]] constexpr float bf16_to_float(std::uint16_t bits) {
  return std::bit_cast<float>(static_cast<std::uint32_t>(bits) << 16);
}

}  // namespace reuseformer::io

namespace reuseformer::detail {

// "BOOL, U8, …, F64": the names parse_dtype accepts, for error messages.
[[nodiscard]] inline std::string dtype_names() {
  std::string out;
  for (const dtype_entry& e : dtype_table) (out += out.empty() ? "" : ", ") += e.name;
  return out;
}

// "[2, 3]": a shape held in a vector, for messages (format_shape takes arrays).
[[nodiscard]] inline std::string format_extents(std::span<const index_t> shape) {
  std::string out = "[";
  for (const index_t extent : shape) (out += out.size() > 1 ? ", " : "") += std::to_string(extent);
  return out + "]";
}

// "F32 [2, 3] needs 24 bytes": what the reader and the writer report when a
// tensor's bytes do not match its dtype and shape.
[[nodiscard]] inline std::string describe_size(io::dtype type, std::span<const index_t> shape) {
  const std::optional<std::uint64_t> bytes = io::byte_count(type, shape);
  return concat(io::name(type), " ", format_extents(shape), " needs ",
                bytes ? std::to_string(*bytes) : "more than 2^64 - 1", " bytes");
}

}  // namespace reuseformer::detail
