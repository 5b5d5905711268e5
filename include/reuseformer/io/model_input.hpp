#pragma once
// The inputs of an encoder call read from a safetensors file (what
// reuseformer-encode takes): hidden_states [B, N, d] (any floating-point dtype,
// finite values only), or input_ids [B, N] (any integer dtype) with optional
// token_type_ids [B, N] for a model with embeddings; and optionally
// attention_mask [B, N] (I64, I32 or F32). Everything is checked against the
// model before any work, and every error throws reuseformer::error naming the
// file and the tensor with the expected and found dtype, shape or value. Ids,
// token types and mask values are checked by the layers that use them.

#include <cmath>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "reuseformer/attention/attention_mask.hpp"
#include "reuseformer/core/error.hpp"
#include "reuseformer/io/safetensors_reader.hpp"

namespace reuseformer::io {

struct model_input {
  index_t batch = 0, seq = 0;
  std::optional<loaded_tensor<float>> hidden;  // [B, N, d], or
  std::vector<std::int64_t> ids, types;        // [B, N] each (types may be empty)
  std::optional<loaded_tensor<float>> float_mask;
  std::vector<std::int64_t> integer_mask;

  // A view of the mask, or no mask; valid while this object lives.
  [[nodiscard]] attention_mask mask() const {
    if (float_mask) return tensor_view<const float, 2>(float_mask->data(), {batch, seq});
    if (!integer_mask.empty()) return tensor_view<const std::int64_t, 2>(integer_mask.data(), {batch, seq});
    return {};
  }
};

}  // namespace reuseformer::io

namespace reuseformer::detail {

template <class... Parts>
[[noreturn]] void fail_input(const io::safetensors_reader& in, const Parts&... parts) {
  throw error(concat(in.source(), ": ", parts...));
}

inline void require_input_shape(const io::safetensors_reader& in, std::string_view name,
                                const std::vector<index_t>& expected) {
  const std::vector<index_t>& found = in.find(name).shape;
  if (found != expected)
    fail_input(in, "tensor '", name, "': expected shape ", format_extents(expected), ", found ", format_extents(found));
}

inline bool is_floating(io::dtype t) {
  using enum io::dtype;
  return t == F64 || t == F32 || t == F16 || t == BF16;
}

}  // namespace reuseformer::detail

namespace reuseformer::io {

// Reads the inputs of a model of hidden size d (with embeddings or not) from `in`.
[[nodiscard]] inline model_input read_model_input(const safetensors_reader& in, index_t d, bool has_embeddings) {
  using detail::fail_input;
  model_input x;
  const bool hidden = in.contains("hidden_states"), ids = in.contains("input_ids");
  if (hidden == ids)
    fail_input(in, "expected one of the tensors 'hidden_states' and 'input_ids', found ", hidden ? "both" : "neither");
  if (hidden) {
    const tensor_info& info = in.find("hidden_states");
    if (!detail::is_floating(info.type))
      fail_input(in, "tensor 'hidden_states': expected a floating-point dtype (F32), found ", name(info.type));
    if (info.shape.size() != 3 || info.shape[0] < 1 || info.shape[1] < 1 || info.shape[2] != d)
      fail_input(in, "tensor 'hidden_states': expected shape [B, N, ", d, "] with B, N >= 1, found ",
                 detail::format_extents(info.shape));
    x.batch = info.shape[0];
    x.seq = info.shape[1];
    x.hidden = in.load<float>("hidden_states");
    const float* values = x.hidden->data();
    for (index_t i = 0; i < x.hidden->size(); ++i)
      if (!std::isfinite(values[i]))
        fail_input(in, "tensor 'hidden_states': expected finite values, found ", values[i], " at [", i / (x.seq * d),
                   ", ", i / d % x.seq, ", ", i % d, "]");
  } else {
    if (!has_embeddings)
      fail_input(in, "tensor 'input_ids': the model has no embeddings; give 'hidden_states' instead");
    const tensor_info& info = in.find("input_ids");
    if (detail::is_floating(info.type))
      fail_input(in, "tensor 'input_ids': expected an integer dtype (I64), found ", name(info.type));
    if (info.shape.size() != 2 || info.shape[0] < 1 || info.shape[1] < 1)
      fail_input(in, "tensor 'input_ids': expected shape [B, N] with B, N >= 1, found ",
                 detail::format_extents(info.shape));
    x.batch = info.shape[0];
    x.seq = info.shape[1];
    x.ids = in.load_integers("input_ids");
    if (in.contains("token_type_ids")) {
      detail::require_input_shape(in, "token_type_ids", {x.batch, x.seq});
      x.types = in.load_integers("token_type_ids");
    }
  }
  if (in.contains("attention_mask")) {
    detail::require_input_shape(in, "attention_mask", {x.batch, x.seq});
    const dtype t = in.find("attention_mask").type;
    if (t == dtype::F32)
      x.float_mask = in.load<float>("attention_mask");
    else if (t == dtype::I64 || t == dtype::I32)
      x.integer_mask = in.load_integers("attention_mask");
    else
      fail_input(in, "tensor 'attention_mask': expected dtype I64, I32 or F32, found ", name(t));
  }
  return x;
}

}  // namespace reuseformer::io
