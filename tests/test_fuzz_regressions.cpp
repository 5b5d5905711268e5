// The fuzz targets (fuzz/harness.hpp) in the ordinary test build: every
// committed seed must still be accepted (so fuzzing keeps starting deep inside
// each parser), and every input a fuzzer found to break the library is
// replayed with the exact message the library now gives for it. Under the
// debug-sanitize preset (scripts/sanitize.sh) this also replays them under
// GCC's ASan and UBSan.
#include <algorithm>
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz/harness.hpp"
#include "support/catch.hpp"

namespace fs = std::filesystem;
namespace fuzz = reuseformer_fuzz;

namespace {

std::vector<std::byte> read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::byte> out(text.size());
  std::ranges::transform(text, out.begin(), [](char c) { return static_cast<std::byte>(c); });
  return out;
}

std::vector<std::byte> bytes_of(std::string_view text) {
  std::vector<std::byte> out(text.size());
  std::ranges::transform(text, out.begin(), [](char c) { return static_cast<std::byte>(c); });
  return out;
}

// A safetensors file: the 8-byte little-endian length of `header`, `header`,
// then `tail` (the data section, and for the model targets their last byte).
std::vector<std::byte> safetensors(const std::string& header, std::string_view tail = "") {
  std::string text(8, '\0');
  for (std::size_t i = 0; i < 8; ++i) text[i] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
  return bytes_of(text + header + std::string(tail));
}

// `depth` nested JSON arrays: "[[…]]".
std::string nested(std::size_t depth) { return std::string(depth, '[') + std::string(depth, ']'); }

// What the target `name` makes of `input` (the message, or "" when accepted).
std::string run(std::string_view name, std::span<const std::byte> input) {
  if (name == "fuzz_safetensors") return fuzz::safetensors(input);
  if (name == "fuzz_config_json") return fuzz::config_json(input);
  if (name == "fuzz_model_input") return fuzz::model_input(input);
  if (name == "fuzz_bert_model") return fuzz::bert_model(input);
  FAIL("no fuzz target named " << name);
  return {};
}

}  // namespace

TEST_CASE("fuzz seed corpora: every seed is accepted by its target", "[fuzz]") {
  const fs::path corpus = fs::path(REUSEFORMER_FUZZ_DIR) / "corpus";
  for (const std::string target : {"fuzz_safetensors", "fuzz_config_json", "fuzz_model_input", "fuzz_bert_model"}) {
    std::vector<fs::path> seeds;
    for (const auto& entry : fs::directory_iterator(corpus / target)) seeds.push_back(entry.path());
    std::ranges::sort(seeds);
    CHECK(seeds.size() >= 4);
    for (const fs::path& seed : seeds) {
      INFO(target << ": " << seed.filename().string());
      CHECK(run(target, read_file(seed)).empty());
    }
  }
}

// Inputs that broke the library, found by running the fuzz targets (the
// libFuzzer binaries, on hand-made inputs aimed at the parsers' edges), with
// the message each gives now. The fixes are commented in the headers.

TEST_CASE("fuzz regression: deeply nested JSON is refused, not dumped into a stack overflow", "[fuzz][io]") {
  // A misshapen "shape" (or dtype, or data_offsets) is dumped into the message
  // recursively: 100,000 levels overflowed the stack.
  const std::string deep_shape = R"({"w":{"dtype":"F32","shape":)" + nested(100'000) + R"(,"data_offsets":[0,0]}})";
  CHECK(fuzz::safetensors(safetensors(deep_shape)) ==
        "<fuzz>: header: expected JSON nested at most 128 levels deep, found deeper nesting");
  // The bound: the root object, the entry and 126 arrays are 128 levels.
  const auto extra_key = [](std::size_t depth) {
    return R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":)" + nested(depth) + "}}";
  };
  CHECK(fuzz::safetensors(safetensors(extra_key(126), "\x07")).empty());
  CHECK(fuzz::safetensors(safetensors(extra_key(127), "\x07")) ==
        "<fuzz>: header: expected JSON nested at most 128 levels deep, found deeper nesting");
  // The model targets read their files through the same reader.
  CHECK(fuzz::model_input(safetensors(deep_shape, "\x01")) ==
        "<fuzz>: header: expected JSON nested at most 128 levels deep, found deeper nesting");

  // config.json: every wrongly typed value is dumped into its message.
  CHECK(fuzz::config_json(bytes_of(R"({"hidden_size":)" + nested(100'000) + "}")) ==
        "<fuzz>: expected JSON nested at most 128 levels deep, found deeper nesting");
  CHECK(fuzz::config_json(bytes_of(R"({"hidden_size":)" + nested(127) + "}")) ==
        "<fuzz>: hidden_size: expected an integer, found " + nested(127));
  CHECK(fuzz::config_json(bytes_of(R"({"hidden_size":)" + nested(128) + "}")) ==
        "<fuzz>: expected JSON nested at most 128 levels deep, found deeper nesting");
}

TEST_CASE("fuzz regression: reuse_attention with a negative or huge num_hidden_layers", "[fuzz][io]") {
  // The reference schedule (one entry per layer) was built before validate():
  // -1 layers threw std::length_error, 10^11 tried to allocate 800 GB.
  CHECK(fuzz::config_json(bytes_of(R"({"num_hidden_layers": -1, "reuse_attention": 0})")) ==
        "<fuzz>: num_hidden_layers: expected >= 0, found -1");
  CHECK(fuzz::config_json(bytes_of(R"({"num_hidden_layers": 100000000000, "reuse_attention": 0})")) ==
        "<fuzz>: num_hidden_layers: expected at most 65536 with reuse_attention (one schedule entry per layer), "
        "found 100000000000");
  // Without reuse_attention nothing is allocated per layer: the count is only validated.
  CHECK(fuzz::config_json(bytes_of(R"({"num_hidden_layers": -1})")) ==
        "<fuzz>: num_hidden_layers: expected >= 0, found -1");
  CHECK(fuzz::config_json(bytes_of(R"({"num_hidden_layers": 65536, "reuse_attention": -1, "max_reuse_layer_idx": 3})"))
            .empty());
}

TEST_CASE("fuzz regression: a layer index past 2^63 in a tensor name", "[fuzz][io]") {
  // std::stoll threw std::out_of_range, which is not a reuseformer::error.
  const std::string header = R"({"encoder.layer.99999999999999999999.attention.self.query.bias":)"
                             R"({"dtype":"F32","shape":[0],"data_offsets":[0,0]}})";
  CHECK(fuzz::bert_model(safetensors(header, std::string_view("\0", 1))) ==
        "<fuzz>: tensor 'encoder.layer.99999999999999999999.attention.self.query.bias': unexpected "
        "(num_hidden_layers is 2)");
  CHECK(fuzz::bert_model(safetensors(header, "\x01")) ==
        "<fuzz>: tensor 'encoder.layer.99999999999999999999.attention.self.query.bias': unexpected "
        "(num_hidden_layers is 2)");
}
