#pragma once
// LayerNorm over the last dimension (torch.nn.LayerNorm(d, eps)).

#include <cstddef>
#include <string>
#include <string_view>

#include "reuseformer/core/parallel.hpp"
#include "reuseformer/core/tensor_view.hpp"
#include "reuseformer/simd/arch.hpp"
#include "reuseformer/simd/layer_norm.hpp"

namespace reuseformer {

// Views of LayerNorm parameters: weight (gamma) [d], bias (beta) [d].
template <class T>
struct layer_norm_weights {
  vector_view<const T> weight;
  vector_view<const T> bias;
};

template <class T, class Arch = simd::default_arch>
class layer_norm {
 public:
  // Throws reuseformer::error when weight or bias is not [d].
  layer_norm(const layer_norm_weights<T>& w, index_t d, double eps, std::string_view name)
      : w_(w), eps_(static_cast<T>(eps)) {
    detail::require_shape(w.weight, {d}, std::string(name) + ".weight");
    detail::require_shape(w.bias, {d}, std::string(name) + ".bias");
  }

  // The layer views the caller's tensors: all its bytes are referenced ones.
  [[nodiscard]] std::size_t parameter_bytes() const {
    return static_cast<std::size_t>(w_.weight.size() + w_.bias.size()) * sizeof(T);
  }
  [[nodiscard]] std::size_t referenced_parameter_bytes() const { return parameter_bytes(); }

  // y[i] = LN(x[i]) for each of `rows` rows of d values; y may equal x.
  void forward(const T* x, T* y, index_t rows, int threads) const {
    parallel_for(rows, threads, [&](index_t i, int) { forward_rows(x, y, i, 1); });
  }

  // The same for rows [first, first + count) only, on the calling thread.
  void forward_rows(const T* x, T* y, index_t first, index_t count) const {
    const index_t d = w_.weight.extent(0);
    for (index_t i = first; i < first + count; ++i)
      simd::layer_norm<T, Arch>(x + i * d, y + i * d, d, w_.weight.data(), w_.bias.data(), eps_);
  }

 private:
  layer_norm_weights<T> w_;
  T eps_;
};

}  // namespace reuseformer
