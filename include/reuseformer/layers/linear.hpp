#pragma once
// A dense layer in PyTorch's layout: y = act(x Wᵀ + b), W [out, in], b [out].

#include <algorithm>
#include <cstddef>
#include <string>
#include <string_view>

#include "reuseformer/core/parallel.hpp"
#include "reuseformer/core/tensor_view.hpp"
#include "reuseformer/gemm/gemm.hpp"
#include "reuseformer/simd/activation.hpp"
#include "reuseformer/simd/arch.hpp"

namespace reuseformer {

// Views of a Linear's parameters (torch.nn.Linear: weight [out, in], bias [out]).
template <class T>
struct linear_weights {
  matrix_view<const T> weight;
  vector_view<const T> bias;
};

template <class T, class Arch = simd::default_arch>
class linear {
 public:
  // Throws reuseformer::error when weight is not [out, in] or bias not [out];
  // `name` prefixes the tensor names in the message (e.g. "layer 3 query").
  linear(const linear_weights<T>& w, index_t in, index_t out, std::string_view name) : w_(w) {
    detail::require_shape(w.weight, {out, in}, std::string(name) + ".weight");
    detail::require_shape(w.bias, {out}, std::string(name) + ".bias");
  }

  [[nodiscard]] index_t in_features() const { return w_.weight.extent(1); }
  [[nodiscard]] index_t out_features() const { return w_.weight.extent(0); }
  [[nodiscard]] std::size_t parameter_bytes() const {
    return static_cast<std::size_t>(w_.weight.size() + w_.bias.size()) * sizeof(T);
  }

  // Per-thread scratch for forward() on `rows` rows.
  [[nodiscard]] index_t scratch_elements(index_t rows, int threads) const {
    return gemm::scratch_elements<T>(rows, out_features(), in_features(), threads);
  }

  // y = Act(x Wᵀ + b) (gemm::update::overwrite) or y = Act(y + x Wᵀ + b)
  // (gemm::update::accumulate: with y holding the residual stream this is the
  // residual add, free inside the GEMM). Shapes: x [rows, in], y [rows, out].
  // Requires: scratch holds `threads` slices of scratch_stride >= scratch_elements().
  template <class Act = simd::identity>
  void forward(gemm::matrix<const T> x, gemm::matrix<T> y, gemm::update mode, int threads,
               T* scratch, index_t scratch_stride) const {
    const gemm::matrix<const T> w{w_.weight.data(), out_features(), in_features(), in_features()};
    gemm::parallel_multiply_add<T>(T(1), x, w, gemm::transpose::yes, y, mode, threads, scratch,
                                   scratch_stride);
    constexpr index_t rows_per_task = 16;
    parallel_for((y.rows + rows_per_task - 1) / rows_per_task, threads, [&](index_t task, int) {
      const index_t first = task * rows_per_task;
      simd::bias_activation<Act, Arch>(y.data + first * y.ld, std::min(rows_per_task, y.rows - first),
                                       y.cols, y.ld, w_.bias.data());
    });
  }

 private:
  linear_weights<T> w_;
};

}  // namespace reuseformer
