#pragma once
// The PyTorch fixtures under tests/fixtures/ (written by
// tests/fixtures/generate_fixtures.py), read through the library's own
// safetensors reader, with typed accessors that insist on the stored dtype (a
// fixture stored in the wrong precision would silently weaken a test).
// Every failure throws reuseformer::error (a std::runtime_error) naming the file.
//
//   reuseformer_test::fixture f("encoder_post_ln_gelu");   // REUSEFORMER_FIXTURE_DIR/…safetensors
//   std::vector<float> w = f.f32("encoder.layer.0.attention.self.query.weight");
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include <reuseformer/io/safetensors_reader.hpp>

#ifndef REUSEFORMER_FIXTURE_DIR
#error "REUSEFORMER_FIXTURE_DIR must be defined (a string literal: the tests/fixtures directory)"
#endif

namespace reuseformer_test {

class fixture {
 public:
  // Maps REUSEFORMER_FIXTURE_DIR "/" name ".safetensors".
  explicit fixture(const std::string& name)
      : file_(std::string(REUSEFORMER_FIXTURE_DIR) + "/" + name + ".safetensors") {}

  [[nodiscard]] const std::string& path() const { return file_.source(); }
  [[nodiscard]] bool has(const std::string& name) const { return file_.contains(name); }
  [[nodiscard]] std::vector<std::int64_t> shape(const std::string& name) const {
    const auto& s = file_.find(name).shape;
    return {s.begin(), s.end()};
  }

  [[nodiscard]] std::vector<float> f32(const std::string& name) const { return read<float>(name); }
  [[nodiscard]] std::vector<double> f64(const std::string& name) const { return read<double>(name); }
  [[nodiscard]] std::vector<std::int64_t> i64(const std::string& name) const { return read<std::int64_t>(name); }

  [[nodiscard]] bool has_meta(const std::string& key) const { return file_.metadata().contains(key); }
  [[nodiscard]] std::string meta(const std::string& key) const {
    const auto it = file_.metadata().find(key);
    if (it == file_.metadata().end()) throw reuseformer::error(path() + ": no __metadata__ key '" + key + "'");
    return it->second;
  }

 private:
  template <class T>
  [[nodiscard]] std::vector<T> read(const std::string& name) const {
    const reuseformer::io::tensor_info& info = file_.find(name);
    if (info.type != reuseformer::io::dtype_of<T>)
      throw reuseformer::error(path() + ": " + name + ": expected dtype " +
                               std::string(reuseformer::io::name(reuseformer::io::dtype_of<T>)) + ", found " +
                               std::string(reuseformer::io::name(info.type)));
    std::vector<T> out(info.bytes.size() / sizeof(T));
    if (!out.empty()) std::memcpy(out.data(), info.bytes.data(), info.bytes.size());
    return out;
  }

  reuseformer::io::safetensors_reader file_;
};

}  // namespace reuseformer_test
