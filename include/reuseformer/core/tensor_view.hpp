#pragma once
// Non-owning, row-major, contiguous views over caller memory.
//
// A tensor_view<T, Rank> is a pointer plus an extent per dimension; the last
// dimension is contiguous. Views never copy and never own: the caller keeps the
// memory alive for as long as any view (or any layer built from views) is used.
// A view of `const T` is the read-only form; a view of T converts to it.

#include <algorithm>
#include <array>
#include <cstddef>
#include <iterator>
#include <type_traits>

#include "reuseformer/core/error.hpp"

namespace reuseformer {

// Signed, so that differences of extents and offsets need no casts.
using index_t = std::ptrdiff_t;

// a / b rounded up, for a >= 0, b >= 1.
[[nodiscard]] constexpr index_t ceil_div(index_t a, index_t b) { return (a + b - 1) / b; }

template <class T, std::size_t Rank>
class tensor_view {
  static_assert(Rank >= 1, "tensor_view: Rank must be at least 1");

 public:
  using element_type = T;
  using shape_type = std::array<index_t, Rank>;
  static constexpr std::size_t rank = Rank;

  constexpr tensor_view() = default;

  // Requires: every extent >= 0; `data` addresses extent product elements
  // (it may be null only when that product is 0).
  constexpr tensor_view(T* data, const shape_type& shape) : data_(data), shape_(shape) {}

  // A view of T is usable wherever a view of const T is expected.
  template <class U>
    requires(std::is_same_v<std::remove_const_t<T>, U> && std::is_const_v<T>)
  constexpr tensor_view(const tensor_view<U, Rank>& other)  // NOLINT(google-explicit-constructor)
      : data_(other.data()), shape_(other.shape()) {}

  [[nodiscard]] constexpr T* data() const { return data_; }
  [[nodiscard]] constexpr const shape_type& shape() const { return shape_; }
  [[nodiscard]] constexpr index_t extent(std::size_t dim) const { return shape_[dim]; }
  [[nodiscard]] constexpr index_t size() const {
    index_t n = 1;
    for (index_t e : shape_) n *= e;
    return n;
  }
  [[nodiscard]] constexpr bool empty() const { return data_ == nullptr; }

  // Element access by Rank indices, row-major. No bounds check.
  template <class... I>
    requires(sizeof...(I) == Rank)
  [[nodiscard]] constexpr T& operator()(I... indices) const {
    const std::array<index_t, Rank> at{static_cast<index_t>(indices)...};
    index_t offset = 0;
    for (std::size_t d = 0; d < Rank; ++d) offset = offset * shape_[d] + at[d];
    return data_[offset];
  }

 private:
  T* data_ = nullptr;
  shape_type shape_{};
};

template <class T>
using vector_view = tensor_view<T, 1>;
template <class T>
using matrix_view = tensor_view<T, 2>;

namespace detail {

// Throws when `view` is missing or its shape differs from `expected`; the message
// names the tensor and both shapes, e.g. "query.weight: expected shape [64, 64], found [64, 32]".
// Where `expected` holds no element (a full-reuse layer's query, [0, d]) an absent
// tensor is what checkpoints contain, so any view without elements is accepted.
template <class T, std::size_t Rank>
void require_shape(const tensor_view<T, Rank>& view, const std::array<index_t, Rank>& expected, std::string_view name) {
  // Messages are built only on failure: this runs on every forward call, which
  // must not allocate.
  index_t expected_size = 1;
  for (const index_t e : expected) expected_size *= e;
  if (expected_size == 0 && view.size() == 0) return;
  if (view.data() == nullptr && view.size() != 0)
    throw error(concat(name, ": expected a tensor of shape ", format_shape(expected), ", found none (null data)"));
  if (view.shape() != expected)
    throw error(concat(name, ": expected shape ", format_shape(expected), ", found ", format_shape(view.shape())));
}

}  // namespace detail
// A view of a contiguous container's elements (std::vector, std::array, a
// span, ...) with the given extents: view(x, {batch, seq, d}). The element type
// is const when the container is. Throws reuseformer::error unless the
// container holds exactly as many elements as the extents.
template <class Container, std::size_t Rank>
[[nodiscard]] auto view(Container&& container, const index_t (&extents)[Rank]) {
  using T = std::remove_reference_t<decltype(*std::data(container))>;
  std::array<index_t, Rank> shape{};
  std::copy(std::begin(extents), std::end(extents), shape.begin());
  const tensor_view<T, Rank> result(std::data(container), shape);
  const auto size = static_cast<index_t>(std::size(container));
  detail::require(size == result.size(), "view: expected ", result.size(), " elements for shape ",
                  detail::format_shape(shape), ", found ", size);
  return result;
}

}  // namespace reuseformer
