#pragma once
// The operand types of the matrix products: a strided row-major matrix view and
// the product's options.

#include <cstdint>
#include <type_traits>

#include "reuseformer/core/tensor_view.hpp"

namespace reuseformer::gemm {

// A row-major matrix with a row stride: rows x cols, element (i, j) at data[i*ld + j].
// Strides let a product read or write one attention head (dh columns of a
// [N, d] matrix) in place.
template <class T>
struct matrix {
  T* data;
  index_t rows;
  index_t cols;
  index_t ld;

  // The sub-matrix of rows [row, row+nrows) and columns [col, col+ncols).
  [[nodiscard]] matrix block(index_t row, index_t nrows, index_t col, index_t ncols) const {
    return {data + row * ld + col, nrows, ncols, ld};
  }
  operator matrix<const T>() const  // NOLINT(google-explicit-constructor)
    requires(!std::is_const_v<T>)
  {
    return {data, rows, cols, ld};
  }
};

// A block of int8 weights as a checkpoint stores them (packed by
// int8_packed_weights.hpp): values [rows, cols]
// (row-major, stride ld) with a scale per row, w[r, p] ≈ values[r, p] · scales[r]
// (a row of a [out, in] Linear weight is a column of op(B)).
struct int8_matrix {
  matrix<const std::int8_t> values;
  const float* scales;  // [rows]
};

enum class transpose { no, yes };

// Whether a product adds to C or replaces it.
enum class update { overwrite, accumulate };

}  // namespace reuseformer::gemm
