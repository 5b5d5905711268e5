#pragma once
// A minimal, test-only reader of the safetensors files under tests/fixtures/
// (written by tests/fixtures/generate_fixtures.py).
//
// Format: u64 little-endian header size S, S bytes of JSON
//   {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
//    "__metadata__": {"key": "value", ...}},
// then the tensors' little-endian bytes; offsets are relative to the byte after
// the header. Every error throws std::runtime_error naming the file and tensor.
//
//   reuseformer_test::fixture f("encoder_post_ln_gelu");   // REUSEFORMER_FIXTURE_DIR/…safetensors
//   std::vector<float> w = f.f32("encoder.layer.0.attention.self.query.weight");
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#ifndef REUSEFORMER_FIXTURE_DIR
#error "REUSEFORMER_FIXTURE_DIR must be defined (a string literal: the tests/fixtures directory)"
#endif

namespace reuseformer_test {

class fixture {
 public:
  // Loads REUSEFORMER_FIXTURE_DIR "/" name ".safetensors" into memory.
  explicit fixture(const std::string& name)
      : path_(std::string(REUSEFORMER_FIXTURE_DIR) + "/" + name + ".safetensors") {
    static_assert(std::endian::native == std::endian::little,
                  "the fixture reader assumes a little-endian host");
    std::ifstream in(path_, std::ios::binary);
    if (!in) fail("cannot open the file");
    bytes_.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());

    if (bytes_.size() < 8) fail("shorter than the 8-byte header size");
    std::uint64_t header_size = 0;
    std::memcpy(&header_size, bytes_.data(), 8);
    if (header_size > bytes_.size() - 8) fail("header size past the end of the file");
    data_begin_ = 8 + static_cast<std::size_t>(header_size);
    const std::size_t data_size = bytes_.size() - data_begin_;

    nlohmann::json header;
    try {
      header = nlohmann::json::parse(bytes_.begin() + 8, bytes_.begin() + data_begin_);
    } catch (const nlohmann::json::exception& e) {
      fail(std::string("header is not valid JSON: ") + e.what());
    }
    if (!header.is_object()) fail("header is not a JSON object");
    for (const auto& [name, value] : header.items()) {
      if (name == "__metadata__") {
        for (const auto& [key, text] : value.items()) {
          if (!text.is_string()) fail("__metadata__." + key + " is not a string");
          metadata_[key] = text.get<std::string>();
        }
        continue;
      }
      entry e;
      try {
        e.dtype = value.at("dtype").get<std::string>();
        e.shape = value.at("shape").get<std::vector<std::int64_t>>();
        const auto offsets = value.at("data_offsets").get<std::vector<std::uint64_t>>();
        if (offsets.size() != 2) fail(name + ": data_offsets must hold two numbers");
        e.begin = offsets[0];
        e.end = offsets[1];
      } catch (const nlohmann::json::exception& ex) {
        fail(name + ": malformed entry: " + ex.what());
      }
      if (e.begin > e.end || e.end > data_size) fail(name + ": data_offsets out of range");
      std::uint64_t count = 1;
      for (std::int64_t extent : e.shape) {
        if (extent < 0) fail(name + ": negative extent");
        count *= static_cast<std::uint64_t>(extent);
      }
      if (count * element_size(name, e.dtype) != e.end - e.begin)
        fail(name + ": byte count does not match shape and dtype");
      tensors_[name] = e;
    }
  }

  [[nodiscard]] const std::string& path() const { return path_; }
  [[nodiscard]] bool has(const std::string& name) const { return tensors_.count(name) != 0; }

  [[nodiscard]] const std::vector<std::int64_t>& shape(const std::string& name) const {
    return find(name).shape;
  }

  // Element count of the tensor.
  [[nodiscard]] std::size_t size(const std::string& name) const {
    std::size_t n = 1;
    for (std::int64_t e : shape(name)) n *= static_cast<std::size_t>(e);
    return n;
  }

  [[nodiscard]] std::vector<float> f32(const std::string& name) const { return read<float>(name, "F32"); }
  [[nodiscard]] std::vector<double> f64(const std::string& name) const { return read<double>(name, "F64"); }
  [[nodiscard]] std::vector<std::int64_t> i64(const std::string& name) const {
    return read<std::int64_t>(name, "I64");
  }

  [[nodiscard]] bool has_meta(const std::string& key) const { return metadata_.count(key) != 0; }
  [[nodiscard]] std::string meta(const std::string& key) const {
    const auto it = metadata_.find(key);
    if (it == metadata_.end()) fail("no __metadata__ key '" + key + "'");
    return it->second;
  }

 private:
  struct entry {
    std::string dtype;
    std::vector<std::int64_t> shape;
    std::uint64_t begin = 0, end = 0;
  };

  [[noreturn]] void fail(const std::string& what) const {
    throw std::runtime_error(path_ + ": " + what);
  }

  std::uint64_t element_size(const std::string& name, const std::string& dtype) const {
    if (dtype == "F64" || dtype == "I64" || dtype == "U64") return 8;
    if (dtype == "F32" || dtype == "I32" || dtype == "U32") return 4;
    if (dtype == "F16" || dtype == "BF16" || dtype == "I16" || dtype == "U16") return 2;
    if (dtype == "I8" || dtype == "U8" || dtype == "BOOL") return 1;
    fail(name + ": unknown dtype " + dtype);
  }

  const entry& find(const std::string& name) const {
    const auto it = tensors_.find(name);
    if (it == tensors_.end()) fail("no tensor named '" + name + "'");
    return it->second;
  }

  template <class T>
  std::vector<T> read(const std::string& name, const char* dtype) const {
    const entry& e = find(name);
    if (e.dtype != dtype) fail(name + ": expected dtype " + dtype + ", found " + e.dtype);
    std::vector<T> out(static_cast<std::size_t>((e.end - e.begin) / sizeof(T)));
    if (!out.empty())
      std::memcpy(out.data(), bytes_.data() + data_begin_ + e.begin, out.size() * sizeof(T));
    return out;
  }

  std::string path_;
  std::vector<char> bytes_;
  std::size_t data_begin_ = 0;
  std::map<std::string, entry> tensors_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace reuseformer_test
