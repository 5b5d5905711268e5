#pragma once
// Reading safetensors files (https://github.com/huggingface/safetensors), the
// format of Hugging Face checkpoints.
//
// Format: an unsigned 64-bit little-endian header length S, S bytes of JSON
//   {"<name>": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, …,
//    "__metadata__": {"<key>": "<value>", …}}          ("__metadata__" is optional)
// (possibly padded with trailing spaces), then the data section: each tensor's
// row-major, little-endian elements at bytes [begin, end) of the data section.
//
// Guarantees: the whole header is checked when the reader is constructed, so a
// reader that exists describes only tensors whose bytes lie inside its input:
//   - the input holds at least 8 bytes; S <= 100,000,000 (the bound of the
//     reference implementation) and S <= the bytes that follow the length;
//   - the header is a JSON object (nested at most 128 levels deep); every entry
//     but "__metadata__" is an object with a "dtype" string naming a dtype of
//     dtype.hpp, a "shape" array of integers in [0, 2^63) and "data_offsets"
//     of two unsigned integers with begin <= end <= the data section's size;
//     end - begin equals the element count times the dtype's size (computed
//     without overflow); no two tensors share a byte;
//   - "__metadata__", when present, is an object of strings.
// Anything else throws reuseformer::error naming the source (the file's path, or
// the name given to in-memory input), the tensor or key, what was expected and
// what was found. Gaps between tensors and bytes after the last one are
// accepted: they cannot make a tensor read another's bytes.
//
// A constructed reader never changes: its members may be called from several
// threads at once.
//
// Preconditions: the host is little-endian (checked at compile time). In-memory
// input outlives the reader; a mapped file is not truncated while the reader
// lives (see mapped_file). tensor_info::bytes and zero-copy loaded_tensors point
// into the reader's input: the reader must outlive them.
//
//   io::safetensors_reader file("model.safetensors");
//   io::loaded_tensor<float> w = file.load<float>("encoder.layer.0.output.dense.weight");
//   matrix_view<const float> w_view = w.view<2>();   // [out, in]; no copy when stored as aligned F32

#include <algorithm>
#include <bit>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <iterator>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "reuseformer/core/bfloat16.hpp"
#include "reuseformer/core/error.hpp"
#include "reuseformer/core/tensor_view.hpp"
#include "reuseformer/io/dtype.hpp"
#include "reuseformer/io/posix_file.hpp"

namespace reuseformer::io {

static_assert(std::endian::native == std::endian::little,
              "safetensors stores little-endian values and the reader reinterprets them in place");

// One tensor's header entry, validated.
struct tensor_info {
  dtype type;
  std::vector<index_t> shape;
  std::span<const std::byte> bytes;  // its data, inside the reader's input

  [[nodiscard]] index_t size() const { return element_count(shape); }
};

// A tensor loaded as T: either a view into the reader's input (the stored dtype
// is T and the data is aligned for T, so no copy is needed) or a copy it owns
// (converted, or a misaligned tensor's values). Copies and moves keep data() valid.
template <class T>
  requires std::same_as<T, float> || std::same_as<T, double> || std::same_as<T, bfloat16> ||
           std::same_as<T, std::int8_t>
class loaded_tensor {
 public:
  [[nodiscard]] const T* data() const { return borrowed_ != nullptr ? borrowed_ : owned_.data(); }
  [[nodiscard]] const std::vector<index_t>& shape() const { return shape_; }
  [[nodiscard]] index_t size() const { return element_count(shape_); }
  // True when data() points into the reader's input rather than into a copy.
  [[nodiscard]] bool borrows() const { return borrowed_ != nullptr; }

  // The data as a tensor_view of rank Rank; throws reuseformer::error naming the
  // source and tensor when the stored rank differs, e.g.
  // "model.safetensors: tensor 'w': expected rank 2, found rank 1 ([6])".
  template <std::size_t Rank>
  [[nodiscard]] tensor_view<const T, Rank> view() const {
    if (shape_.size() != Rank)
      throw error(detail::concat(where_, ": expected rank ", Rank, ", found rank ", shape_.size(), " (",
                                 detail::format_extents(shape_), ")"));
    std::array<index_t, Rank> extents{};
    std::ranges::copy(shape_, extents.begin());
    return {data(), extents};
  }

 private:
  friend class safetensors_reader;
  loaded_tensor(std::string where, std::vector<index_t> shape) : where_(std::move(where)), shape_(std::move(shape)) {}

  std::string where_;  // "<source>: tensor '<name>'", for view()'s message
  std::vector<index_t> shape_;
  const T* borrowed_ = nullptr;
  std::vector<T> owned_;
};

}  // namespace reuseformer::io

namespace reuseformer::detail {

// The elements of `bytes` read as Stored (memcpy: the data may be unaligned)
// and passed through `convert`.
template <class Stored, class Convert>
[[nodiscard]] auto decode(std::span<const std::byte> bytes, Convert convert) {
  std::vector<decltype(convert(Stored{}))> out(bytes.size() / sizeof(Stored));
  for (std::size_t i = 0; i < out.size(); ++i) {
    Stored value;
    std::memcpy(&value, bytes.data() + i * sizeof(Stored), sizeof(Stored));
    out[i] = convert(value);
  }
  return out;
}
}  // namespace reuseformer::detail

namespace reuseformer::io {

class safetensors_reader {
 public:
  // The reference implementation's bound; it also caps what the JSON parser is fed.
  static constexpr std::uint64_t max_header_length = 100'000'000;
  // The deepest nesting of arrays and objects the header may have (serde_json's
  // recursion limit; a valid header needs 3).
  static constexpr int max_nesting = 128;

  // Maps the file read-only and validates its header. Throws reuseformer::error
  // "<path>: cannot open: <reason>" when it cannot be mapped, and the messages
  // described at the top of this file when it is malformed.
  explicit safetensors_reader(const std::filesystem::path& path) : file_(path), source_(path.string()) {
    parse(file_.bytes());
  }

  // Validates `bytes`, which stay owned by the caller; `source` names them in
  // messages (a file name, "<fuzz input>", …).
  safetensors_reader(std::span<const std::byte> bytes, std::string source) : source_(std::move(source)) {
    parse(bytes);
  }

  safetensors_reader(safetensors_reader&&) = default;
  safetensors_reader& operator=(safetensors_reader&&) = default;
  safetensors_reader(const safetensors_reader&) = delete;
  safetensors_reader& operator=(const safetensors_reader&) = delete;
  ~safetensors_reader() = default;

  // The path or name messages start with.
  [[nodiscard]] const std::string& source() const { return source_; }
  // The whole input: the mapped file or the caller's bytes.
  [[nodiscard]] std::span<const std::byte> bytes() const { return bytes_; }

  // Tensor names, sorted.
  [[nodiscard]] std::vector<std::string> names() const {
    std::vector<std::string> out;
    out.reserve(tensors_.size());
    for (const auto& entry : tensors_) out.push_back(entry.first);
    return out;
  }
  [[nodiscard]] bool contains(std::string_view tensor) const { return tensors_.contains(tensor); }

  // Throws reuseformer::error "<source>: no tensor named '<tensor>'" when absent.
  [[nodiscard]] const tensor_info& find(std::string_view tensor) const {
    const auto it = tensors_.find(tensor);
    if (it == tensors_.end()) fail("no tensor named '", tensor, "'");
    return it->second;
  }

  // The "__metadata__" strings (empty when the header has none).
  [[nodiscard]] const std::map<std::string, std::string, std::less<>>& metadata() const { return metadata_; }

  // The tensor as T, a view when stored as aligned T, otherwise a copy.
  // float or double: from F64, F32, F16 or BF16, converted with
  // round-to-nearest (F16 and BF16 convert exactly, special values included).
  // bfloat16: from BF16 only, the stored values (rounding another dtype is the
  // caller's choice to make); std::int8_t: from I8 only (int8 values mean
  // nothing without the scales the caller finds). Throws on any other dtype.
  template <class T>
    requires std::same_as<T, float> || std::same_as<T, double> || std::same_as<T, bfloat16> ||
             std::same_as<T, std::int8_t>
  [[nodiscard]] loaded_tensor<T> load(std::string_view tensor) const {
    const tensor_info& info = find(tensor);
    loaded_tensor<T> out(detail::concat(source_, ": tensor '", tensor, "'"), info.shape);
    if (info.type == dtype_of<T> && reinterpret_cast<std::uintptr_t>(info.bytes.data()) % alignof(T) == 0) {
      out.borrowed_ = reinterpret_cast<const T*>(info.bytes.data());
    } else if constexpr (std::same_as<T, bfloat16> || std::same_as<T, std::int8_t>) {
      if (info.type != dtype_of<T>)
        fail("tensor '", tensor, "': expected dtype ", name(dtype_of<T>), ", found ", name(info.type));
      out.owned_ = detail::decode<T>(info.bytes, [](T value) { return value; });
    } else {
      const auto to_t = [](auto value) { return static_cast<T>(value); };
      const auto f16_to_t = [](std::uint16_t bits) { return static_cast<T>(f16_to_float(bits)); };
      const auto bf16_to_t = [](std::uint16_t bits) { return static_cast<T>(bf16_to_float(bits)); };
      if (info.type == dtype::F64) {
        out.owned_ = detail::decode<double>(info.bytes, to_t);
      } else if (info.type == dtype::F32) {
        out.owned_ = detail::decode<float>(info.bytes, to_t);
      } else if (info.type == dtype::F16) {
        out.owned_ = detail::decode<std::uint16_t>(info.bytes, f16_to_t);
      } else if (info.type == dtype::BF16) {
        out.owned_ = detail::decode<std::uint16_t>(info.bytes, bf16_to_t);
      } else {
        fail("tensor '", tensor, "': expected dtype F64, F32, F16 or BF16, found ", name(info.type));
      }
    }
    return out;
  }

  // An integer tensor (token ids, attention masks) widened to int64, from every
  // dtype whose values int64 holds exactly. Throws on any other dtype.
  [[nodiscard]] std::vector<std::int64_t> load_integers(std::string_view tensor) const {
    const tensor_info& info = find(tensor);
    const auto widen = [](auto value) { return static_cast<std::int64_t>(value); };
    switch (info.type) {
      case dtype::I64:
        return detail::decode<std::int64_t>(info.bytes, widen);
      case dtype::I32:
        return detail::decode<std::int32_t>(info.bytes, widen);
      case dtype::I16:
        return detail::decode<std::int16_t>(info.bytes, widen);
      case dtype::I8:
        return detail::decode<std::int8_t>(info.bytes, widen);
      case dtype::U32:
        return detail::decode<std::uint32_t>(info.bytes, widen);
      case dtype::U16:
        return detail::decode<std::uint16_t>(info.bytes, widen);
      case dtype::U8:
        return detail::decode<std::uint8_t>(info.bytes, widen);
      default:
        fail("tensor '", tensor, "': expected dtype I64, I32, I16, I8, U32, U16 or U8, found ", name(info.type));
    }
  }

  // See mapped_file::release_pages(); nothing for in-memory input.
  void release_pages() const noexcept { file_.release_pages(); }

 private:
  using json = nlohmann::json;

  template <class... Parts>
  [[noreturn]] void fail(const Parts&... parts) const {
    throw error(detail::concat(source_, ": ", parts...));
  }

  // The one parser: the file constructor maps the file and comes here too.
  void parse(std::span<const std::byte> bytes) {
    bytes_ = bytes;
    if (bytes.size() < 8) fail("expected at least 8 bytes (the header length), found ", bytes.size());
    std::uint64_t length = 0;
    std::memcpy(&length, bytes.data(), 8);
    if (length > max_header_length)
      fail("header length: expected at most ", max_header_length, " bytes, found ", length);
    if (length > bytes.size() - 8)
      fail("header length: expected at most ", bytes.size() - 8, " bytes (the rest of the input), found ", length);
    const auto* text = reinterpret_cast<const char*>(bytes.data() + 8);
    json header;
    // Nesting is bounded, as the reference implementation's JSON parser
    // (serde_json) bounds it: the messages below dump offending values
    // recursively, and a "shape" of 100,000 nested arrays overflowed the stack
    // (found with the fuzz/fuzz_safetensors target).
    const auto bounded = [&](int depth, json::parse_event_t event, const json&) {
      if ((event == json::parse_event_t::object_start || event == json::parse_event_t::array_start) &&
          depth >= max_nesting)
        fail("header: expected JSON nested at most ", max_nesting, " levels deep, found deeper nesting");
      return true;
    };
    try {
      header = json::parse(text, text + length, bounded);
    } catch (const json::parse_error& e) {
      fail("header: expected JSON, found a syntax error at byte ", e.byte);
    } catch (const json::exception& e) {
      fail("header: expected JSON, found an unreadable value (", e.what(), ")");
    }
    if (!header.is_object()) fail("header: expected a JSON object, found ", header.type_name());

    const std::span<const std::byte> data = bytes.subspan(8 + static_cast<std::size_t>(length));
    for (const auto& [key, value] : header.items()) {
      if (key == "__metadata__")
        read_metadata(value);
      else
        tensors_.emplace(key, read_entry(key, value, data));
    }
    require_disjoint(data);
  }

  void read_metadata(const json& metadata) {
    if (!metadata.is_object()) fail("__metadata__: expected a JSON object, found ", metadata.type_name());
    for (const auto& [key, value] : metadata.items()) {
      if (!value.is_string()) fail("__metadata__ key '", key, "': expected a string, found ", value.type_name());
      metadata_.emplace(key, value.get<std::string>());
    }
  }

  tensor_info read_entry(const std::string& tensor, const json& entry, std::span<const std::byte> data) const {
    const std::string where = detail::concat("tensor '", tensor, "': ");
    if (!entry.is_object()) fail(where, "expected a JSON object, found ", entry.type_name());
    const auto field = [&](const char* key) -> const json* {
      const auto it = entry.find(key);
      return it == entry.end() ? nullptr : &*it;
    };
    const auto found = [](const json* value) { return value ? value->dump() : std::string("none"); };
    const auto is_unsigned = [](const json& value) { return value.is_number_unsigned(); };

    const json* dtype_json = field("dtype");
    if (!dtype_json || !dtype_json->is_string()) fail(where, "dtype: expected a string, found ", found(dtype_json));
    const std::optional<dtype> type = parse_dtype(dtype_json->get_ref<const std::string&>());
    if (!type) fail(where, "dtype: expected one of ", detail::dtype_names(), ", found ", found(dtype_json));

    const json* shape_json = field("shape");
    const auto is_extent = [&](const json& extent) {
      return is_unsigned(extent) && extent.get<std::uint64_t>() <= static_cast<std::uint64_t>(PTRDIFF_MAX);
    };
    if (!shape_json || !shape_json->is_array() || !std::ranges::all_of(*shape_json, is_extent))
      fail(where, "shape: expected an array of integers in [0, 2^63), found ", found(shape_json));
    std::vector<index_t> shape;
    for (const json& extent : *shape_json) shape.push_back(static_cast<index_t>(extent.get<std::uint64_t>()));

    const json* offsets = field("data_offsets");
    if (!offsets || !offsets->is_array() || offsets->size() != 2 || !std::ranges::all_of(*offsets, is_unsigned))
      fail(where, "data_offsets: expected two unsigned integers, found ", found(offsets));
    const auto begin = (*offsets)[0].get<std::uint64_t>();
    const auto end = (*offsets)[1].get<std::uint64_t>();
    const std::string span_text = detail::concat("data_offsets [", begin, ", ", end, "]");
    if (begin > end) fail(where, span_text, ": expected begin <= end");
    if (end > data.size()) fail(where, span_text, ": end past the data section (", data.size(), " bytes)");
    if (byte_count(*type, shape) != end - begin)
      fail(where, detail::describe_size(*type, shape), ", ", span_text, " hold ", end - begin);
    return {*type, std::move(shape), data.subspan(begin, end - begin)};
  }

  // Sorted by start, tensors are disjoint exactly when each non-empty one
  // starts at or after the end of the non-empty one before it.
  void require_disjoint(std::span<const std::byte> data) const {
    std::vector<const std::pair<const std::string, tensor_info>*> order;
    for (const auto& entry : tensors_)
      if (!entry.second.bytes.empty()) order.push_back(&entry);
    std::ranges::sort(order, std::less<>{}, [](const auto* e) { return e->second.bytes.data(); });
    const auto offsets = [&](const auto* e) {
      const auto begin = e->second.bytes.data() - data.data();
      return detail::concat("data_offsets [", begin, ", ", begin + std::ssize(e->second.bytes), "]");
    };
    for (std::size_t i = 1; i < order.size(); ++i) {
      const auto* previous = order[i - 1];
      const auto* current = order[i];
      if (current->second.bytes.data() < previous->second.bytes.data() + previous->second.bytes.size())
        fail("tensors '", previous->first, "' (", offsets(previous), ") and '", current->first, "' (", offsets(current),
             ") overlap");
    }
  }

  mapped_file file_;  // empty for in-memory input
  std::string source_;
  std::span<const std::byte> bytes_;
  std::map<std::string, tensor_info, std::less<>> tensors_;
  std::map<std::string, std::string, std::less<>> metadata_;
};

}  // namespace reuseformer::io
