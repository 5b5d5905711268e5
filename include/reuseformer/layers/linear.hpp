#pragma once
// A dense layer in PyTorch's layout, y = act(x Wᵀ + b) with W [out, in], b [out],
// or several of them over the same input stacked into one product (a layer's
// query, key and value): y = [x W_1ᵀ + b_1, x W_2ᵀ + b_2, ...].
//
// The weights are prepared once, here, by the product backend (Products,
// layers/product_backend.hpp: by default packed into our GEMM's panel layout)
// and the biases copied next to them: after construction the layer holds
// everything it reads, and the caller's tensors may be released. The bias and
// activation are applied by the product's epilogue while each block of y is in
// cache.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "reuseformer/core/tensor_view.hpp"
#include "reuseformer/core/thread_scratch.hpp"
#include "reuseformer/gemm/gemm.hpp"
#include "reuseformer/layers/product_backend.hpp"
#include "reuseformer/simd/activation.hpp"
#include "reuseformer/simd/arch.hpp"

namespace reuseformer {

// A Linear's weight stored as int8 (a checkpoint's `X.weight` I8 with
// `X.weight_scale` F32, docs/checkpoints.md): values q [out, in] and a scale
// per output row, w[r, p] ≈ q[r, p] · scale[r].
struct int8_weight_view : matrix_view<const std::int8_t> {
  vector_view<const float> scale;  // [out], each finite and > 0
};

namespace detail {
template <class W>
struct weight_view_of {
  using type = matrix_view<const W>;
};
template <>
struct weight_view_of<std::int8_t> {
  using type = int8_weight_view;
};

// Requires `scale` ([rows] of `name`, e.g. "encoder.layer.0.output.dense.weight_scale")
// to hold finite scales > 0: a zero, negative or non-finite scale dequantizes
// its row into nothing meaningful.
inline void require_int8_scales(vector_view<const float> scale, index_t rows, const std::string& name) {
  require_shape(scale, {rows}, name);
  for (index_t r = 0; r < rows; ++r)
    require(std::isfinite(scale(r)) && scale(r) > 0, name, ": expected finite scales > 0, found ", scale(r), " at row ",
            r);
}
}  // namespace detail

// Views of a Linear's parameters (torch.nn.Linear: weight [out, in], bias [out]).
// W, the weight's element type: T; bfloat16 for a product backend that
// stores bfloat16 (bf16_products), which then packs the values as they are
// (a BF16 checkpoint's weights, with no float copy); std::int8_t for one that
// stores int8 (int8_products): then weight is an int8_weight_view, packed as
// it is.
template <class T, class W = T>
struct linear_weights {
  typename detail::weight_view_of<W>::type weight;
  vector_view<const T> bias;
};

// One Linear of a stacked layer: its tensors, its output count, and the name
// that prefixes its tensors in error messages (e.g. "encoder.layer.3.attention.self.query").
template <class T, class W = T>
struct linear_part {
  const linear_weights<T, W>& weights;
  index_t out;
  std::string_view name;
};

template <class T, class Arch = simd::default_arch, class Products = packed_products>
  requires product_backend<Products, T, Arch>
class linear {
 public:
  // A single Linear, its weight of W elements (T, or bfloat16 or std::int8_t
  // where Products takes it: packs_weights_of). Throws reuseformer::error when
  // weight is not [out, in], bias not [out], or an int8 weight's scales not
  // [out] finite and > 0 (`name` + ".weight" / ".bias" / ".weight_scale" in
  // the message).
  template <class W = T>
    requires packs_weights_of<Products, T, Arch, W>
  linear(const linear_weights<T, W>& w, index_t in, index_t out, std::string_view name)
      : linear({linear_part<T, W>{w, out, name}}, in) {}

  // Parts stacked along the outputs, in order; each checked as above.
  template <class W = T>
    requires packs_weights_of<Products, T, Arch, W>
  linear(std::initializer_list<linear_part<T, W>> parts, index_t in)
      : weight_(std::span<const weight_block<W>>(packed(parts, in)), in),
        bias_(static_cast<std::size_t>(weight_.out_features())) {
    T* bias = bias_.data();
    for (const linear_part<T, W>& p : parts) bias = std::copy_n(p.weights.bias.data(), p.out, bias);
  }

  [[nodiscard]] index_t in_features() const { return weight_.in_features(); }
  [[nodiscard]] index_t out_features() const { return weight_.out_features(); }
  // Bytes the layer holds: the backend's weight (see its bytes()) and the bias.
  [[nodiscard]] std::size_t parameter_bytes() const { return weight_.bytes() + bias_.size() * sizeof(T); }

  // Per-thread scratch for forward() (any number of rows and threads).
  [[nodiscard]] index_t scratch_elements() const { return weight_.scratch_elements(); }

  // y = Act(x Wᵀ + b) (gemm::update::overwrite) or y = Act(y + x Wᵀ + b)
  // (gemm::update::accumulate: with y holding the residual stream this is the
  // residual add, free inside the product). Then, when given, after(row, rows)
  // once rows [row, row + rows) of y are final (e.g. the LayerNorm that follows
  // a residual add, while the rows are in cache).
  // Shapes: x [rows, in], y [rows, out].
  // Requires: scratch.stride >= scratch_elements(), slices 64-byte aligned.
  template <class Act = simd::identity, class AfterRows = std::nullptr_t>
  void forward(gemm::matrix<const T> x, gemm::matrix<T> y, gemm::update mode, const thread_scratch<T>& scratch,
               AfterRows after = nullptr) const {
    const T* const bias = bias_.data();
    const auto finish = [&](index_t row, index_t rows, index_t col, index_t cols) {
      simd::bias_activation<Act, T, Arch>(y.data + row * y.ld + col, rows, cols, y.ld, bias + col);
    };
    if constexpr (std::is_same_v<AfterRows, std::nullptr_t>) {
      weight_.multiply(x, y, mode, scratch, finish);
    } else {
      const auto rows_done = [&](index_t row, index_t rows) {
        finish(row, rows, 0, y.cols);
        after(row, rows);
      };
      weight_.multiply(x, y, mode, scratch, gemm::rows_epilogue<decltype(rows_done)>{rows_done});
    }
  }

 private:
  // The parts' weights, checked, as the blocks to pack.
  template <class W>
  static std::vector<weight_block<W>> packed(std::initializer_list<linear_part<T, W>> parts, index_t in) {
    std::vector<weight_block<W>> blocks;
    for (const linear_part<T, W>& p : parts) {
      detail::require_shape(p.weights.weight, {p.out, in}, std::string(p.name) + ".weight");
      detail::require_shape(p.weights.bias, {p.out}, std::string(p.name) + ".bias");
      const gemm::matrix<const W> values{p.weights.weight.data(), p.out, in, in};
      if constexpr (std::is_same_v<W, std::int8_t>) {
        detail::require_int8_scales(p.weights.weight.scale, p.out, std::string(p.name) + ".weight_scale");
        blocks.push_back({values, p.weights.weight.scale.data()});
      } else {
        blocks.push_back(values);
      }
    }
    return blocks;
  }

  typename Products::template weight<T, Arch> weight_;
  std::vector<T> bias_;
};

}  // namespace reuseformer
