#pragma once
// An owning array aligned to workspace_alignment (large ones to a huge page:
// see allocate_buffer), for data a layer keeps for its lifetime and the
// kernels read with aligned vector loads (packed weights).
// Copies copy the elements (the layers holding one keep value semantics).

#include <algorithm>
#include <cstddef>
#include <memory>
#include <new>
#include <string_view>
#include <utility>

#include "reuseformer/core/error.hpp"
#include "reuseformer/core/tensor_view.hpp"
#include "reuseformer/core/workspace.hpp"

namespace reuseformer::detail {

template <class E>
class aligned_array {
 public:
  aligned_array() = default;

  // `count` (>= 0) uninitialised elements of a trivial type. Throws
  // reuseformer::error naming `what` (a string literal: copies name it too)
  // when the memory cannot be had.
  aligned_array(index_t count, std::string_view what) : what_(what), size_(count) {
    if (count == 0) return;
    const std::size_t bytes = static_cast<std::size_t>(count) * sizeof(E);
    data_ = allocate_buffer<E>(bytes);
    require(data_ != nullptr, what, ": cannot allocate ", bytes, " bytes");
  }
  aligned_array(const aligned_array& other) : aligned_array(other.size_, other.what_) {
    std::copy_n(other.data(), size_, data());
  }
  aligned_array(aligned_array&& other) noexcept
      : what_(other.what_), size_(std::exchange(other.size_, 0)), data_(std::move(other.data_)) {}
  aligned_array& operator=(aligned_array other) noexcept {
    std::swap(what_, other.what_);
    std::swap(size_, other.size_);
    std::swap(data_, other.data_);
    return *this;
  }
  ~aligned_array() = default;

  [[nodiscard]] E* data() { return data_.get(); }
  [[nodiscard]] const E* data() const { return data_.get(); }
  [[nodiscard]] index_t size() const { return size_; }

 private:
  std::string_view what_;
  index_t size_ = 0;
  buffer_ptr<E> data_;
};

}  // namespace reuseformer::detail
