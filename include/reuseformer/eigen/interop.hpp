#pragma once
// Zero-copy conversions between the library's tensor_view and Eigen.
//
// Eigen → views (the view addresses the Eigen object's own memory):
//   view_rows(x)     a row-major [rows, cols] matrix: activations [B·N, d],
//                    weights [out, in] → matrix_view [rows, cols]
//   view_columns(x)  a column-major [d, n] matrix whose columns are tokens (the
//                    same memory as row-major [n, d]) → matrix_view [n, d]
//   view_vector(x)   a vector (bias, LayerNorm parameter) → vector_view
//   view_tensor(t)   an Eigen::Tensor / TensorMap with Eigen::RowMajor layout
//                    ([B, N, d]) → tensor_view of the same rank
//   batched(v, B)    matrix_view [B·N, d] → tensor_view [B, N, d], for forward()
// x may be any Eigen expression with direct access to its memory: a Matrix, a
// Map (with its strides), a Ref, a block of a larger matrix, a transpose.
// Views of const memory are views of const T.
//
// Views → Eigen (maps of the view's memory):
//   map_rows(v)      [.., d] → Map of a row-major [size / d, d] matrix
//   map_columns(v)   [.., d] → Map of a column-major [d, size / d] matrix (tokens as columns)
//   map_vector(v)    [n] → Map of a column vector
//   map_tensor(v)    → TensorMap of a row-major Eigen::Tensor of the same rank
// A map converts to an Eigen::Ref of the same layout without a copy.
//
// Nothing here copies. A layout or a stride that a view cannot address (a
// column-major matrix given as rows, a block narrower than its parent, a
// vector with a stride, a column-major tensor) throws reuseformer::error
// naming the object, the expected and the found layout and strides; copy it
// yourself (e.g. into a row-major Eigen::Matrix) if that is what you mean.
//
// Weights: linear_weights_of(W, b) and layer_norm_weights_of(gamma, beta) view
// Eigen matrices a user holds as the parts of an encoder_layer_weights (the
// layers' constructors then copy what they keep; see linear.hpp).

#include <Eigen/Core>
#include <unsupported/Eigen/CXX11/Tensor>

#include <array>
#include <cstddef>
#include <string>
#include <string_view>
#include <type_traits>

#include "reuseformer/core/error.hpp"
#include "reuseformer/core/tensor_view.hpp"
#include "reuseformer/layers/layer_norm.hpp"
#include "reuseformer/layers/linear.hpp"

namespace reuseformer::eigen {

// An Eigen matrix or vector expression whose elements lie in memory at fixed
// strides (Matrix, Map, Ref, Block, Transpose of those).
template <class X>
concept direct_access = std::is_base_of_v<Eigen::DenseBase<std::remove_cvref_t<X>>, std::remove_cvref_t<X>> &&
                        (int(std::remove_cvref_t<X>::Flags) & Eigen::DirectAccessBit) != 0;

// An Eigen::Tensor or Eigen::TensorMap.
template <class X>
concept dense_tensor = requires(X& t) {
  std::remove_cvref_t<X>::NumIndices;
  std::remove_cvref_t<X>::Layout;
  t.data();
  t.dimensions();
};

namespace detail {

using reuseformer::detail::concat;
using reuseformer::detail::format_shape;
using reuseformer::detail::require;

// The element type a view of x has: const when x's memory is read-only.
template <class X>
using element_of = std::remove_pointer_t<decltype(std::declval<X&>().data())>;

template <class Scalar, int Options>
using dynamic_matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Options>;

// Eigen::Map<const M> for a view of const T, Eigen::Map<M> otherwise.
template <class T, class Plain>
using map_of = Eigen::Map<std::conditional_t<std::is_const_v<T>, const Plain, Plain>>;

[[nodiscard]] inline const char* layout_name(bool row_major) { return row_major ? "row-major" : "column-major"; }

// Throws unless x's element (i, j) lies at (i * row_stride + j * col_stride)
// from its first one wherever i or j can vary (a dimension of extent <= 1 has
// no stride to match).
template <class X>
void require_strides(const X& x, Eigen::Index row_stride, Eigen::Index col_stride, bool row_major,
                     std::string_view name) {
  const bool rows_fit = x.rows() <= 1 || x.rowStride() == row_stride;
  const bool cols_fit = x.cols() <= 1 || x.colStride() == col_stride;
  if (rows_fit && cols_fit) return;
  throw error(concat(name, ": cannot be viewed without a copy: expected ", layout_name(row_major), " storage of ",
                     format_shape(std::array{x.rows(), x.cols()}), " with (row, column) strides (", row_stride, ", ",
                     col_stride, "), found ", layout_name(std::remove_cvref_t<X>::IsRowMajor), " with strides (",
                     x.rowStride(), ", ", x.colStride(), ")"));
}

// Strides of a dense tensor of `dims` in either layout.
template <std::size_t Rank>
[[nodiscard]] std::array<index_t, Rank> tensor_strides(const std::array<index_t, Rank>& dims, bool row_major) {
  std::array<index_t, Rank> strides{};
  index_t step = 1;
  for (std::size_t i = 0; i < Rank; ++i) {
    const std::size_t d = row_major ? Rank - 1 - i : i;
    strides[d] = step;
    step *= dims[d];
  }
  return strides;
}

}  // namespace detail

// A row-major [rows, cols] view of x: x(i, j) at i * cols + j. Requires row
// stride cols and column stride 1 (a row-major matrix, a Map or Ref with that
// outer stride, a block of whole rows). Throws reuseformer::error otherwise.
template <direct_access X>
[[nodiscard]] matrix_view<detail::element_of<X>> view_rows(X&& x, std::string_view name = "matrix") {
  detail::require_strides(x, x.cols(), 1, true, name);
  return {x.data(), {x.rows(), x.cols()}};
}

// x [d, n] whose columns are tokens, as the [n, d] row-major view of the same
// memory: x(i, j) at j * d + i. Requires column stride d and row stride 1 (a
// column-major matrix, a block of whole columns). Throws reuseformer::error otherwise.
template <direct_access X>
[[nodiscard]] matrix_view<detail::element_of<X>> view_columns(X&& x, std::string_view name = "matrix") {
  detail::require_strides(x, 1, x.rows(), false, name);
  return {x.data(), {x.cols(), x.rows()}};
}

// A vector view of x, a row or a column with consecutive elements. Throws
// reuseformer::error for a matrix or a vector with a stride (a column of a
// row-major matrix).
template <direct_access X>
[[nodiscard]] vector_view<detail::element_of<X>> view_vector(X&& x, std::string_view name = "vector") {
  const bool is_row = x.rows() == 1;
  detail::require(is_row || x.cols() == 1, name, ": expected a vector (one row or one column), found shape ",
                  detail::format_shape(std::array{x.rows(), x.cols()}));
  const Eigen::Index stride = is_row ? x.colStride() : x.rowStride();
  detail::require(x.size() <= 1 || stride == 1, name, ": cannot be viewed without a copy: expected ", x.size(),
                  " consecutive elements (stride 1), found stride ", stride);
  return {x.data(), {x.size()}};
}

// A view of an Eigen::Tensor or TensorMap with Eigen::RowMajor layout (e.g.
// [B, N, d]). Throws reuseformer::error for a column-major one (unless its
// layouts coincide, every extent but one being 1).
template <dense_tensor X>
[[nodiscard]] auto view_tensor(X&& t, std::string_view name = "tensor") {
  using plain = std::remove_cvref_t<X>;
  constexpr auto rank = static_cast<std::size_t>(plain::NumIndices);
  std::array<index_t, rank> dims{};
  for (std::size_t i = 0; i < rank; ++i) dims[i] = static_cast<index_t>(t.dimensions()[i]);
  constexpr bool row_major = int(plain::Layout) == int(Eigen::RowMajor);
  if constexpr (!row_major) {
    const auto expected = detail::tensor_strides(dims, true), found = detail::tensor_strides(dims, false);
    for (std::size_t i = 0; i < rank; ++i)
      detail::require(dims[i] <= 1 || expected[i] == found[i], name,
                      ": cannot be viewed without a copy: expected a row-major (Eigen::RowMajor) tensor of ",
                      detail::format_shape(dims), " with strides ", detail::format_shape(expected),
                      ", found column-major (Eigen::ColMajor) with strides ", detail::format_shape(found));
  }
  return tensor_view<detail::element_of<X>, rank>(t.data(), dims);
}

// tokens [B·N, d] as [B, N, d]. Throws reuseformer::error unless batch >= 1
// divides the row count.
template <class T>
[[nodiscard]] tensor_view<T, 3> batched(matrix_view<T> tokens, index_t batch, std::string_view name = "tokens") {
  const index_t rows = tokens.extent(0);
  detail::require(batch >= 1 && rows % batch == 0, name, ": expected a row count divisible by the batch size ", batch,
                  ", found ", rows, " rows");
  return {tokens.data(), {batch, rows / batch, tokens.extent(1)}};
}

// The view [.., d] as a row-major [size / d, d] matrix (rows: tokens or outputs).
template <class T, std::size_t Rank>
  requires(Rank >= 2)
[[nodiscard]] auto map_rows(tensor_view<T, Rank> v) {
  using plain = detail::dynamic_matrix<std::remove_const_t<T>, Eigen::RowMajor>;
  const index_t cols = v.extent(Rank - 1);
  return detail::map_of<T, plain>(v.data(), cols == 0 ? 0 : v.size() / cols, cols);
}

// The view [.., d] as a column-major [d, size / d] matrix: one column per row of
// the view (per token).
template <class T, std::size_t Rank>
  requires(Rank >= 2)
[[nodiscard]] auto map_columns(tensor_view<T, Rank> v) {
  using plain = detail::dynamic_matrix<std::remove_const_t<T>, Eigen::ColMajor>;
  const index_t d = v.extent(Rank - 1);
  return detail::map_of<T, plain>(v.data(), d, d == 0 ? 0 : v.size() / d);
}

template <class T>
[[nodiscard]] auto map_vector(vector_view<T> v) {
  using plain = Eigen::Matrix<std::remove_const_t<T>, Eigen::Dynamic, 1>;
  return detail::map_of<T, plain>(v.data(), v.extent(0));
}

// The view as a TensorMap of a row-major tensor of the same rank and extents.
template <class T, std::size_t Rank>
[[nodiscard]] auto map_tensor(tensor_view<T, Rank> v) {
  using plain = Eigen::Tensor<std::remove_const_t<T>, static_cast<int>(Rank), Eigen::RowMajor, Eigen::Index>;
  using map = Eigen::TensorMap<std::conditional_t<std::is_const_v<T>, const plain, plain>>;
  std::array<Eigen::Index, Rank> dims{};
  for (std::size_t i = 0; i < Rank; ++i) dims[i] = v.extent(i);
  return map(v.data(), dims);
}

// A Linear's parameters from Eigen objects: weight [out, in] row-major (see
// view_rows), bias [out] (see view_vector). `name` (e.g.
// "encoder.layer.0.attention.self.query") prefixes ".weight" / ".bias" in errors.
template <direct_access W, direct_access B>
[[nodiscard]] auto linear_weights_of(const W& weight, const B& bias, std::string_view name = "linear") {
  using T = typename W::Scalar;
  static_assert(std::is_same_v<T, typename B::Scalar>, "linear_weights_of: weight and bias differ in scalar type");
  return linear_weights<T>{view_rows(weight, std::string(name) + ".weight"),
                           view_vector(bias, std::string(name) + ".bias")};
}

// A LayerNorm's parameters (gamma, beta: [d] each) from Eigen vectors.
template <direct_access G, direct_access B>
[[nodiscard]] auto layer_norm_weights_of(const G& gamma, const B& beta, std::string_view name = "LayerNorm") {
  using T = typename G::Scalar;
  static_assert(std::is_same_v<T, typename B::Scalar>, "layer_norm_weights_of: gamma and beta differ in scalar type");
  return layer_norm_weights<T>{view_vector(gamma, std::string(name) + ".weight"),
                               view_vector(beta, std::string(name) + ".bias")};
}

}  // namespace reuseformer::eigen
