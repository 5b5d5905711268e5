// The safetensors reader and writer: every malformed input with its exact
// message, dtype decoding bit for bit (against tests/fixtures/io_roundtrip.safetensors,
// written by generate_io_fixtures.py), zero-copy loading, and atomic writes.
#include <sys/resource.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include <reuseformer/io/safetensors.hpp>

#include "support/catch.hpp"
#include "support/errors.hpp"
#include "support/temp_dir.hpp"

namespace fs = std::filesystem;
namespace io = reuseformer::io;
using reuseformer_test::error_message;
using reuseformer_test::temp_dir;

namespace {

const std::string fixture_path = REUSEFORMER_FIXTURE_DIR "/io_roundtrip.safetensors";

// The 8-byte little-endian `length`, then `rest`: any header length, honest or not.
std::vector<std::byte> with_length(std::uint64_t length, const std::string& rest) {
  std::vector<std::byte> out(8 + rest.size());
  std::memcpy(out.data(), &length, 8);
  std::memcpy(out.data() + 8, rest.data(), rest.size());
  return out;
}

// A well-framed input: `header` padded with spaces to a multiple of 8 bytes (so
// the data section is 8-aligned in the vector), then `data_bytes` zero bytes.
std::vector<std::byte> input(std::string header, std::size_t data_bytes = 0) {
  header.resize((header.size() + 7) / 8 * 8, ' ');
  return with_length(header.size(), header + std::string(data_bytes, '\0'));
}

// The message reading `bytes` (under the name "model.safetensors") throws.
std::string read_error(const std::vector<std::byte>& bytes) {
  return error_message([&] { io::safetensors_reader reader(bytes, "model.safetensors"); });
}

// A header with one tensor 'w'.
std::string one_tensor(const std::string& dtype, const std::string& shape, const std::string& offsets) {
  return R"({"w":{"dtype":)" + dtype + R"(,"shape":)" + shape + R"(,"data_offsets":)" + offsets + "}}";
}

void write_bytes(const fs::path& path, const std::vector<std::byte>& bytes) {
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

template <class T>
auto bits_of(T value) {
  if constexpr (sizeof(T) == 4)
    return std::bit_cast<std::uint32_t>(value);
  else
    return std::bit_cast<std::uint64_t>(value);
}

template <class T>
auto bits_of(const io::loaded_tensor<T>& t) {
  std::vector<decltype(bits_of(T{}))> out;
  for (reuseformer::index_t i = 0; i < t.size(); ++i) out.push_back(bits_of(t.data()[i]));
  return out;
}

bool inside(const void* p, std::span<const std::byte> bytes) {
  const auto* b = static_cast<const std::byte*>(p);
  return b >= bytes.data() && b < bytes.data() + bytes.size();
}

}  // namespace

// ---------------------------------------------------------------- malformed input

TEST_CASE("input shorter than the 8-byte header length", "[io][malformed]") {
  CHECK(read_error(std::vector<std::byte>(5)) ==
        "model.safetensors: expected at least 8 bytes (the header length), found 5");
}

TEST_CASE("header length past the end of the input", "[io][malformed]") {
  CHECK(read_error(with_length(100, "{}")) ==
        "model.safetensors: header length: expected at most 2 bytes (the rest of the input), found 100");
}

TEST_CASE("header length over the 100 MB bound", "[io][malformed]") {
  CHECK(read_error(with_length(100'000'001, "{}")) ==
        "model.safetensors: header length: expected at most 100000000 bytes, found 100000001");
  CHECK(read_error(with_length(std::numeric_limits<std::uint64_t>::max(), "{}")) ==
        "model.safetensors: header length: expected at most 100000000 bytes, found 18446744073709551615");
}

TEST_CASE("header that is not JSON", "[io][malformed]") {
  CHECK(read_error(input(R"({"w": nope})")) ==
        "model.safetensors: header: expected JSON, found a syntax error at byte 8");
  CHECK(read_error(with_length(5, R"({"w":)")) ==
        "model.safetensors: header: expected JSON, found a syntax error at byte 6");
  CHECK(read_error(input(R"({"w": 1e999})")) ==
        "model.safetensors: header: expected JSON, found an unreadable value "
        "([json.exception.out_of_range.406] number overflow parsing '1e999')");
}

TEST_CASE("header that is not a JSON object", "[io][malformed]") {
  CHECK(read_error(input("[1, 2]")) == "model.safetensors: header: expected a JSON object, found array");
}

TEST_CASE("tensor entry that is not an object or lacks a field", "[io][malformed]") {
  CHECK(read_error(input(R"({"w": 3})")) == "model.safetensors: tensor 'w': expected a JSON object, found number");
  CHECK(read_error(input(R"({"w": {"shape": [1], "data_offsets": [0, 4]}})", 4)) ==
        "model.safetensors: tensor 'w': dtype: expected a string, found none");
  CHECK(read_error(input(one_tensor("32", "[1]", "[0, 4]"), 4)) ==
        "model.safetensors: tensor 'w': dtype: expected a string, found 32");
}

TEST_CASE("unknown dtype", "[io][malformed]") {
  CHECK(read_error(input(one_tensor(R"("F128")", "[1]", "[0, 16]"), 16)) ==
        "model.safetensors: tensor 'w': dtype: expected one of BOOL, U8, I8, F8_E5M2, F8_E4M3, I16, U16, "
        "F16, BF16, I32, U32, F32, I64, U64, F64, found \"F128\"");
}

TEST_CASE("shape entries that are negative, not integers, too large or absent", "[io][malformed]") {
  CHECK(read_error(input(one_tensor(R"("F32")", "[2, -1]", "[0, 8]"), 8)) ==
        "model.safetensors: tensor 'w': shape: expected an array of integers in [0, 2^63), found [2,-1]");
  CHECK(read_error(input(one_tensor(R"("F32")", "[1.5]", "[0, 4]"), 4)) ==
        "model.safetensors: tensor 'w': shape: expected an array of integers in [0, 2^63), found [1.5]");
  CHECK(read_error(input(one_tensor(R"("F32")", "[0, 9223372036854775808]", "[0, 0]"))) ==
        "model.safetensors: tensor 'w': shape: expected an array of integers in [0, 2^63), "
        "found [0,9223372036854775808]");
  CHECK(read_error(input(one_tensor(R"("F32")", R"("2x2")", "[0, 16]"), 16)) ==
        "model.safetensors: tensor 'w': shape: expected an array of integers in [0, 2^63), found \"2x2\"");
  CHECK(read_error(input(R"({"w": {"dtype": "F32", "data_offsets": [0, 4]}})", 4)) ==
        "model.safetensors: tensor 'w': shape: expected an array of integers in [0, 2^63), found none");
}

TEST_CASE("byte count that disagrees with dtype and shape", "[io][malformed]") {
  CHECK(read_error(input(one_tensor(R"("F32")", "[2, 3]", "[0, 20]"), 24)) ==
        "model.safetensors: tensor 'w': F32 [2, 3] needs 24 bytes, data_offsets [0, 20] hold 20");
  // The element count overflows 64 bits: it must not wrap around to a match.
  CHECK(read_error(input(one_tensor(R"("F32")", "[4294967296, 4294967296]", "[0, 0]"))) ==
        "model.safetensors: tensor 'w': F32 [4294967296, 4294967296] needs more than 2^64 - 1 bytes, "
        "data_offsets [0, 0] hold 0");
}

TEST_CASE("data offsets out of range or malformed", "[io][malformed]") {
  const std::string name = "encoder.layer.0.attention.self.query.weight";
  const std::string past = R"({")" + name + R"(":{"dtype":"F32","shape":[25],"data_offsets":[0,100]}})";
  CHECK(read_error(input(past, 96)) ==
        "model.safetensors: tensor '" + name + "': data_offsets [0, 100]: end past the data section (96 bytes)");
  CHECK(read_error(input(one_tensor(R"("F32")", "[1]", "[8, 4]"), 8)) ==
        "model.safetensors: tensor 'w': data_offsets [8, 4]: expected begin <= end");
  CHECK(read_error(input(one_tensor(R"("F32")", "[1]", "[4]"), 4)) ==
        "model.safetensors: tensor 'w': data_offsets: expected two unsigned integers, found [4]");
  CHECK(read_error(input(one_tensor(R"("F32")", "[1]", "[-4, 0]"), 4)) ==
        "model.safetensors: tensor 'w': data_offsets: expected two unsigned integers, found [-4,0]");
}

TEST_CASE("overlapping tensors", "[io][malformed]") {
  const std::string header = R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                             R"("b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}})";
  CHECK(read_error(input(header, 24)) ==
        "model.safetensors: tensors 'a' (data_offsets [0, 16]) and 'b' (data_offsets [8, 24]) overlap");

  // An empty tensor occupies no byte, wherever its offsets point.
  const std::string empty_inside = R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                                   R"("e":{"dtype":"F32","shape":[0],"data_offsets":[8,8]}})";
  const std::vector<std::byte> bytes = input(empty_inside, 16);
  CHECK(io::safetensors_reader(bytes, "model.safetensors").names() == std::vector<std::string>{"a", "e"});

  // Empty, though its other extents multiply past 2^63.
  const std::vector<std::byte> huge = input(one_tensor(R"("F64")", "[4611686018427387904, 4, 0]", "[0, 0]"));
  const io::safetensors_reader reader(huge, "model.safetensors");
  CHECK(reader.find("w").size() == 0);
  CHECK(reader.load<double>("w").size() == 0);
}

TEST_CASE("__metadata__ that is not an object of strings", "[io][malformed]") {
  CHECK(read_error(input(R"({"__metadata__": {"format": 1}})")) ==
        "model.safetensors: __metadata__ key 'format': expected a string, found number");
  CHECK(read_error(input(R"({"__metadata__": ["pt"]})")) ==
        "model.safetensors: __metadata__: expected a JSON object, found array");
}

TEST_CASE("missing tensors and dtypes a load cannot convert", "[io][lookup]") {
  const std::vector<std::byte> bytes = input(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                             R"("ids":{"dtype":"I64","shape":[1],"data_offsets":[8,16]}})",
                                             16);
  const io::safetensors_reader reader(bytes, "model.safetensors");
  CHECK_FALSE(reader.contains("missing"));
  CHECK(error_message([&] { (void)reader.find("missing"); }) == "model.safetensors: no tensor named 'missing'");
  CHECK(error_message([&] { (void)reader.load<float>("missing"); }) == "model.safetensors: no tensor named 'missing'");
  CHECK(error_message([&] { (void)reader.load_integers("missing"); }) ==
        "model.safetensors: no tensor named 'missing'");
  CHECK(error_message([&] { (void)reader.load_integers("x"); }) ==
        "model.safetensors: tensor 'x': expected dtype I64, I32, I16, I8, U32, U16 or U8, found F32");
  CHECK(error_message([&] { (void)reader.load<double>("ids"); }) ==
        "model.safetensors: tensor 'ids': expected dtype F64, F32, F16 or BF16, found I64");
  CHECK(error_message([&] { (void)reader.load<reuseformer::bfloat16>("x"); }) ==
        "model.safetensors: tensor 'x': expected dtype BF16, found F32");
  CHECK(error_message([&] { (void)reader.load<std::int8_t>("x"); }) ==
        "model.safetensors: tensor 'x': expected dtype I8, found F32");
  CHECK(error_message([&] { (void)reader.load<float>("x").view<2>(); }) ==
        "model.safetensors: tensor 'x': expected rank 2, found rank 1 ([2])");
}

TEST_CASE("files that do not exist, are not regular, or are malformed", "[io][file]") {
  const temp_dir dir;
  const fs::path missing = dir.path / "nope.safetensors";
  CHECK(error_message([&] { io::safetensors_reader r(missing); }) ==
        missing.string() + ": cannot open: No such file or directory");
  CHECK(error_message([&] { io::safetensors_reader r(dir.path); }) ==
        dir.path.string() + ": cannot open: not a regular file");

  // The file path runs the in-memory parser: same messages, the path as source.
  const fs::path empty = dir.path / "empty.safetensors";
  write_bytes(empty, {});
  CHECK(error_message([&] { io::safetensors_reader r(empty); }) ==
        empty.string() + ": expected at least 8 bytes (the header length), found 0");
  const fs::path past = dir.path / "past.safetensors";
  write_bytes(past, input(one_tensor(R"("F32")", "[3]", "[0, 12]"), 8));
  CHECK(error_message([&] { io::safetensors_reader r(past); }) ==
        past.string() + ": tensor 'w': data_offsets [0, 12]: end past the data section (8 bytes)");
}

// ---------------------------------------------------------------- decoding

TEST_CASE("F16 and BF16 decode exactly on chosen bit patterns", "[io][dtype]") {
  using io::bf16_to_float;
  using io::f16_to_float;
  CHECK(bits_of(f16_to_float(0x0000)) == 0x00000000u);
  CHECK(bits_of(f16_to_float(0x8000)) == 0x80000000u);   // -0
  CHECK(f16_to_float(0x0001) == std::ldexp(1.0f, -24));  // smallest subnormal
  CHECK(f16_to_float(0x8001) == -std::ldexp(1.0f, -24));
  CHECK(f16_to_float(0x03ff) == std::ldexp(1023.0f, -24));  // largest subnormal
  CHECK(f16_to_float(0x0400) == std::ldexp(1.0f, -14));     // smallest normal
  CHECK(f16_to_float(0x3c00) == 1.0f);
  CHECK(f16_to_float(0xc000) == -2.0f);
  CHECK(f16_to_float(0x7bff) == 65504.0f);              // largest finite
  CHECK(bits_of(f16_to_float(0x7c00)) == 0x7f800000u);  // +inf
  CHECK(bits_of(f16_to_float(0xfc00)) == 0xff800000u);  // -inf
  CHECK(bits_of(f16_to_float(0x7e00)) == 0x7fc00000u);  // quiet NaN
  CHECK(bits_of(f16_to_float(0xfd01)) == 0xffa02000u);  // signalling NaN: sign and payload kept

  CHECK(bits_of(bf16_to_float(0x8000)) == 0x80000000u);
  CHECK(bf16_to_float(0x0001) == std::ldexp(1.0f, -133));  // smallest subnormal
  CHECK(bf16_to_float(0x3f80) == 1.0f);
  CHECK(bf16_to_float(0x4049) == 3.140625f);
  CHECK(bits_of(bf16_to_float(0xff80)) == 0xff800000u);
  CHECK(bits_of(bf16_to_float(0x7f81)) == 0x7f810000u);
}

TEST_CASE("F16 decodes every one of the 65536 patterns like its defining formula", "[io][dtype]") {
  int mismatches = 0;
  for (std::uint32_t h = 0; h <= 0xffff; ++h) {
    const std::uint32_t sign = h >> 15, exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff;
    const float got = io::f16_to_float(static_cast<std::uint16_t>(h));
    bool ok = false;
    if (exponent == 0x1f) {  // inf or NaN: the bits widen, nothing else changes
      ok = bits_of(got) == (sign << 31 | 0x7f800000u | mantissa << 13);
    } else {  // (-1)^s · m · 2^-24 (subnormal) or (-1)^s · (1024 + m) · 2^(e - 25): exact in double
      const double magnitude =
          exponent == 0 ? std::ldexp(double(mantissa), -24) : std::ldexp(double(1024 + mantissa), int(exponent) - 25);
      ok = bits_of(got) == bits_of(static_cast<float>(sign ? -magnitude : magnitude));
    }
    mismatches += ok ? 0 : 1;
  }
  CHECK(mismatches == 0);
}

TEST_CASE("the generated fixture reads back bit for bit", "[io][fixture]") {
  const io::safetensors_reader reader(fixture_path);
  CHECK(reader.source() == fixture_path);
  CHECK(reader.names() == std::vector<std::string>{"bf16", "bf16_as_f32", "f16", "f16_as_f32", "f32_empty",
                                                   "f32_scalar", "f32_special", "f64", "f64_as_f32", "i32", "i64",
                                                   "u8"});
  CHECK(reader.metadata() ==
        std::map<std::string, std::string, std::less<>>{{"format", "pt"}, {"purpose", "io round trip"}});

  SECTION("F32 special values, a scalar and an empty tensor") {
    const io::loaded_tensor<float> special = reader.load<float>("f32_special");
    CHECK(special.shape() == std::vector<reuseformer::index_t>{2, 4});
    CHECK(bits_of(special) == std::vector<std::uint32_t>{0x00000000, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00000,
                                                         0x00000001, 0x00800000, 0x7f7fffff});
    const reuseformer::matrix_view<const float> view = special.view<2>();
    CHECK(view.shape() == std::array<reuseformer::index_t, 2>{2, 4});
    CHECK(view(1, 3) == std::numeric_limits<float>::max());

    const io::loaded_tensor<float> scalar = reader.load<float>("f32_scalar");
    CHECK(scalar.shape().empty());
    REQUIRE(scalar.size() == 1);
    CHECK(scalar.data()[0] == 1.5f);
    const io::loaded_tensor<float> empty = reader.load<float>("f32_empty");
    CHECK(empty.shape() == std::vector<reuseformer::index_t>{0, 3});
    CHECK(empty.size() == 0);
    CHECK(reader.find("f32_empty").bytes.empty());
  }
  SECTION("F64 as double in place, and as float rounded") {
    const io::loaded_tensor<double> f64 = reader.load<double>("f64");
    CHECK(f64.borrows());
    CHECK(bits_of(f64) ==
          std::vector<std::uint64_t>{bits_of(1.0 / 3.0), bits_of(-1e-310), bits_of(1e300), bits_of(-2.5)});
    const io::loaded_tensor<float> narrowed = reader.load<float>("f64");
    CHECK_FALSE(narrowed.borrows());
    CHECK(bits_of(narrowed) == bits_of(reader.load<float>("f64_as_f32")));
    CHECK(bits_of(narrowed) ==
          std::vector<std::uint32_t>{bits_of(float(1.0 / 3.0)), 0x80000000, 0x7f800000, bits_of(-2.5f)});
  }
  SECTION("F16 and BF16 as numpy and torch convert them") {
    for (const std::string name : {"f16", "bf16"}) {
      INFO(name);
      const io::loaded_tensor<float> converted = reader.load<float>(name);
      CHECK_FALSE(converted.borrows());
      CHECK(converted.shape() == reader.find(name).shape);
      CHECK(bits_of(converted) == bits_of(reader.load<float>(name + "_as_f32")));
      // As double: the float value widened.
      const io::loaded_tensor<double> wide = reader.load<double>(name);
      for (reuseformer::index_t i = 0; i < wide.size(); ++i)
        CHECK(bits_of(wide.data()[i]) == bits_of(static_cast<double>(converted.data()[i])));
    }
  }
  SECTION("integers widened to int64") {
    const auto i64_min = std::numeric_limits<std::int64_t>::min();
    const auto i64_max = std::numeric_limits<std::int64_t>::max();
    CHECK(reader.load_integers("i64") == std::vector<std::int64_t>{i64_min, -1, 0, 1, 42, i64_max});
    CHECK(reader.find("i64").shape == std::vector<reuseformer::index_t>{2, 3});
    const auto i32_min = std::numeric_limits<std::int32_t>::min();
    const auto i32_max = std::numeric_limits<std::int32_t>::max();
    CHECK(reader.load_integers("i32") == std::vector<std::int64_t>{i32_min, -7, 0, i32_max});
    CHECK(reader.load_integers("u8") == std::vector<std::int64_t>{0, 1, 255});
  }
}

// ---------------------------------------------------------------- zero copy

TEST_CASE("aligned tensors of the requested type are views into the mapping", "[io][zero-copy]") {
  io::safetensors_reader reader(fixture_path);
  const io::loaded_tensor<float> in_place = reader.load<float>("f32_special");
  CHECK(in_place.borrows());
  CHECK(inside(in_place.data(), reader.bytes()));
  CHECK(in_place.data() == reinterpret_cast<const float*>(reader.find("f32_special").bytes.data()));

  const io::loaded_tensor<float> converted = reader.load<float>("f16");
  CHECK_FALSE(converted.borrows());
  CHECK_FALSE(inside(converted.data(), reader.bytes()));

  // Moving the reader keeps the mapping, so earlier views stay valid.
  const io::safetensors_reader moved = std::move(reader);
  CHECK(inside(in_place.data(), moved.bytes()));
  CHECK(bits_of(in_place.data()[2]) == 0x7f800000u);
}

TEST_CASE("misaligned tensors are copied", "[io][zero-copy]") {
  // 'w' starts at data offset 1: not a multiple of alignof(float).
  std::vector<std::byte> bytes = input(R"({"pad":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                                       R"("w":{"dtype":"F32","shape":[2],"data_offsets":[1,9]}})",
                                       9);
  const float values[2] = {1.25f, -3.0f};
  std::memcpy(bytes.data() + bytes.size() - 8, values, 8);
  const io::safetensors_reader reader(bytes, "in memory");
  const io::loaded_tensor<float> w = reader.load<float>("w");
  CHECK_FALSE(w.borrows());
  CHECK(w.data()[0] == 1.25f);
  CHECK(w.data()[1] == -3.0f);

  // As bfloat16: 'h' at offset 1, its values copied as they are.
  std::vector<std::byte> halves = input(R"({"pad":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                                        R"("h":{"dtype":"BF16","shape":[2],"data_offsets":[1,5]}})",
                                        5);
  const std::uint16_t bits[2] = {0x3fc0, 0xff81};  // 1.5 and a NaN
  std::memcpy(halves.data() + halves.size() - 4, bits, 4);
  const io::safetensors_reader half_reader(halves, "in memory");
  const io::loaded_tensor<reuseformer::bfloat16> h = half_reader.load<reuseformer::bfloat16>("h");
  CHECK_FALSE(h.borrows());
  CHECK(h.data()[0].bits == 0x3fc0);
  CHECK(h.data()[1].bits == 0xff81);
}

// ---------------------------------------------------------------- writer

TEST_CASE("written files read back bit for bit, every tensor aligned", "[io][writer]") {
  const temp_dir dir;
  const fs::path path = dir.path / "out.safetensors";
  const std::vector<float> f32{
      0.5f, -0.0f, std::numeric_limits<float>::infinity(), std::numeric_limits<float>::denorm_min(), 7.0f, -1e-3f};
  const std::vector<double> f64{1.0 / 3.0, -1e-310};
  const std::vector<std::int64_t> i64{std::numeric_limits<std::int64_t>::min(), 0, 5};
  const std::vector<std::int32_t> i32{-2, std::numeric_limits<std::int32_t>::max()};
  const std::vector<std::uint8_t> u8{1, 2, 3};  // odd byte count, stored last
  const std::vector<std::uint16_t> f16_bits{0x3c00, 0x0001};
  const std::vector<reuseformer::bfloat16> bf16{{0x3f80}, {0x8001}, {0x7f80}};
  io::write_safetensors(path,
                        {io::make_entry("f32", f32, {2, 3}),
                         io::make_entry("f64", f64, {2}),
                         io::make_entry("ids", i64, {1, 3}),
                         io::make_entry("i32", i32, {2}),
                         io::make_entry("u8", u8, {3}),
                         io::make_entry("bf16", bf16, {3}),
                         {"half", io::dtype::F16, {2}, std::as_bytes(std::span(f16_bits))},
                         io::make_entry("empty", std::vector<float>{}, {0, 4})},
                        {{"format", "pt"}, {"note", "round trip"}});
  CHECK(dir.entries() == std::vector<std::string>{"out.safetensors"});

  const io::safetensors_reader reader(path);
  std::uint64_t header_length = 0;
  std::memcpy(&header_length, reader.bytes().data(), 8);
  CHECK(header_length % 8 == 0);
  CHECK(reader.metadata().at("note") == "round trip");
  for (const std::string& name : reader.names()) {
    const io::tensor_info& info = reader.find(name);
    INFO(name);
    CHECK(reinterpret_cast<std::uintptr_t>(info.bytes.data()) % io::size_in_bytes(info.type) == 0);
  }
  const io::loaded_tensor<float> f32_read = reader.load<float>("f32");
  CHECK(f32_read.borrows());
  CHECK(f32_read.shape() == std::vector<reuseformer::index_t>{2, 3});
  CHECK(std::memcmp(f32_read.data(), f32.data(), 24) == 0);
  CHECK(std::memcmp(reader.load<double>("f64").data(), f64.data(), 16) == 0);
  CHECK(reader.load<double>("f64").borrows());
  CHECK(reader.load_integers("ids") == i64);
  CHECK(reader.find("ids").shape == std::vector<reuseformer::index_t>{1, 3});
  CHECK(reader.load_integers("i32") == std::vector<std::int64_t>{i32[0], i32[1]});
  CHECK(reader.load_integers("u8") == std::vector<std::int64_t>{1, 2, 3});
  CHECK(bits_of(reader.load<float>("half")) == std::vector<std::uint32_t>{0x3f800000, 0x33800000});
  const io::loaded_tensor<reuseformer::bfloat16> bf16_read = reader.load<reuseformer::bfloat16>("bf16");
  CHECK(reader.find("bf16").type == io::dtype::BF16);
  CHECK(bf16_read.borrows());
  CHECK(std::equal(bf16.begin(), bf16.end(), bf16_read.data()));
  CHECK(bits_of(reader.load<float>("bf16")) == std::vector<std::uint32_t>{0x3f800000, 0x80010000, 0x7f800000});
  CHECK(reader.load<float>("empty").size() == 0);

  // Writing again replaces the file.
  io::write_safetensors(path, {io::make_entry("only", i32, {2})});
  CHECK(io::safetensors_reader(path).names() == std::vector<std::string>{"only"});
  CHECK(io::safetensors_reader(path).metadata().empty());
  CHECK(dir.entries() == std::vector<std::string>{"out.safetensors"});
}

TEST_CASE("invalid tensors are refused before any file is created", "[io][writer]") {
  const temp_dir dir;
  const fs::path path = dir.path / "out.safetensors";
  const std::vector<float> five(5);
  const auto message = [&](std::vector<io::tensor_entry> tensors) {
    return error_message([&] { io::write_safetensors(path, tensors); });
  };
  CHECK(message({io::make_entry("w", five, {2, 3})}) ==
        path.string() + ": tensor 'w': F32 [2, 3] needs 24 bytes, found 20");
  CHECK(message({io::make_entry("w", five, {5, -1})}) ==
        path.string() + ": tensor 'w': shape [5, -1]: expected extents >= 0");
  CHECK(message({io::make_entry("w", five, {5}), io::make_entry("w", five, {5})}) ==
        path.string() + ": tensor 'w' appears twice");
  CHECK(message({io::make_entry("__metadata__", five, {5})}) ==
        path.string() + ": tensor name '__metadata__' is reserved for the metadata");
  CHECK(dir.entries().empty());
}

TEST_CASE("failed writes leave neither the target nor a temporary file", "[io][writer]") {
  const temp_dir dir;
  const std::vector<float> values(4096, 1.0f);
  const std::vector<io::tensor_entry> tensors{io::make_entry("w", values, {64, 64})};

  SECTION("the target's directory does not exist") {
    const fs::path path = dir.path / "missing" / "out.safetensors";
    CHECK(error_message([&] { io::write_safetensors(path, tensors); }) ==
          path.string() + ": cannot create a temporary file beside it: No such file or directory");
    CHECK(dir.entries().empty());
  }
  SECTION("the rename fails: the target is a directory") {
    const fs::path path = dir.path / "out.safetensors";
    fs::create_directory(path);
    CHECK(error_message([&] { io::write_safetensors(path, tensors); }) ==
          path.string() + ": cannot rename the temporary file onto it: Is a directory");
    CHECK(dir.entries() == std::vector<std::string>{"out.safetensors"});
    CHECK(fs::is_directory(path));
  }
  SECTION("a write fails half way (file size limit): the previous file survives") {
    const fs::path path = dir.path / "out.safetensors";
    io::write_safetensors(path, {io::make_entry("old", std::vector<float>{1.0f}, {1})});
    rlimit saved{};
    REQUIRE(::getrlimit(RLIMIT_FSIZE, &saved) == 0);
    rlimit limited = saved;
    limited.rlim_cur = 4096;                                      // the tensor alone is 16 KiB
    const auto previous_handler = std::signal(SIGXFSZ, SIG_IGN);  // get EFBIG instead of dying
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &limited) == 0);
    const std::string message = error_message([&] { io::write_safetensors(path, tensors); });
    ::setrlimit(RLIMIT_FSIZE, &saved);
    std::signal(SIGXFSZ, previous_handler);
    CHECK(message == path.string() + ": cannot write: File too large");
    CHECK(dir.entries() == std::vector<std::string>{"out.safetensors"});
    CHECK(io::safetensors_reader(path).names() == std::vector<std::string>{"old"});
  }
}
