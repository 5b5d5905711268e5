#pragma once
// The Hugging Face key-padding mask: attention_mask [B, N], 1 = token, 0 = padding.
//
// Tokenizers hand it out as int64 (PyTorch), int32 or float; attention_mask
// accepts a view of any arithmetic element type without copying, and
// to_additive() turns it into the additive form the softmax kernel consumes
// (0 where a key may be attended, -inf where it may not).

#include <cstdint>
#include <limits>
#include <type_traits>

#include "reuseformer/core/error.hpp"
#include "reuseformer/core/tensor_view.hpp"

namespace reuseformer {

class attention_mask {
 public:
  // No mask: every key is a token.
  attention_mask() = default;

  // Views `mask` [B, N]; element values must be 0 or 1 (checked when used).
  template <class M>
    requires std::is_arithmetic_v<std::remove_const_t<M>>
  attention_mask(tensor_view<M, 2> mask)  // NOLINT(google-explicit-constructor)
      : data_(mask.data()), shape_(mask.shape()), read_(&read_as<std::remove_const_t<M>>) {}

  [[nodiscard]] bool present() const { return read_ != nullptr; }
  [[nodiscard]] const std::array<index_t, 2>& shape() const { return shape_; }

  // Writes the additive mask [batch, seq] to `out`: 0 for a token, -inf for padding.
  // Throws reuseformer::error if the mask is not [batch, seq] or holds a value
  // other than 0 or 1. Requires present().
  template <class T>
  void to_additive(index_t batch, index_t seq, T* out) const {
    require_shape(batch, seq);
    for (index_t i = 0; i < batch * seq; ++i) out[i] = token(i, seq) ? T(0) : -std::numeric_limits<T>::infinity();
  }

  // The number of tokens (1s) in the mask. Throws as to_additive() does.
  [[nodiscard]] index_t tokens(index_t batch, index_t seq) const {
    require_shape(batch, seq);
    index_t count = 0;
    for (index_t i = 0; i < batch * seq; ++i) count += token(i, seq);
    return count;
  }

  // Writes the offsets [batch + 1] of the packed batch of its tokens
  // (core/sequences.hpp): row b's tokens become sequence b. Throws
  // reuseformer::error as to_additive() does, and on a row that is not
  // right-padded (a 1 after a 0). Requires present().
  void to_offsets(index_t batch, index_t seq, index_t* out) const {
    require_shape(batch, seq);
    out[0] = 0;
    for (index_t b = 0; b < batch; ++b) {
      index_t length = 0;
      for (index_t j = 0; j < seq; ++j) {
        const bool is_token = token(b * seq + j, seq);
        if (is_token && length < j)
          throw error(detail::concat("attention_mask[", b, ", ", j,
                                     "]: expected 0 (right padding: no token after padding, as padding::skip "
                                     "requires), found 1 after attention_mask[",
                                     b, ", ", length, "] = 0"));
        length += is_token;
      }
      out[b + 1] = out[b] + length;
    }
  }

 private:
  void require_shape(index_t batch, index_t seq) const {
    if (shape_ != std::array<index_t, 2>{batch, seq})
      throw error(detail::concat("attention_mask: expected shape ",
                                 detail::format_shape(std::array<index_t, 2>{batch, seq}), ", found ",
                                 detail::format_shape(shape_)));
  }

  // Element i (row i / seq): true for a token, false for padding; throws on
  // any other value.
  [[nodiscard]] bool token(index_t i, index_t seq) const {
    const double value = read_(data_, i);
    if (value != 0.0 && value != 1.0)
      throw error(detail::concat("attention_mask[", i / seq, ", ", i % seq,
                                 "]: expected 0 (padding) or 1 (token), found ", value));
    return value == 1.0;
  }

  template <class M>
  static double read_as(const void* data, index_t i) {
    return static_cast<double>(static_cast<const M*>(data)[i]);
  }

  const void* data_ = nullptr;
  std::array<index_t, 2> shape_{};
  double (*read_)(const void*, index_t) = nullptr;
};

}  // namespace reuseformer
