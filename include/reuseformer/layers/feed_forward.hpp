#pragma once
// BERT's position-wise feed-forward block (`intermediate.dense` then `output.dense`):
//   FFN(x) = act(x W_1ᵀ + b_1) W_2ᵀ + b_2,   W_1 [d_ff, d], W_2 [d, d_ff]

#include <algorithm>
#include <cstddef>
#include <string>
#include <string_view>

#include "reuseformer/core/thread_scratch.hpp"
#include "reuseformer/core/workspace.hpp"
#include "reuseformer/layers/config.hpp"
#include "reuseformer/layers/linear.hpp"
#include "reuseformer/layers/forward_interface.hpp"
#include "reuseformer/simd/activation.hpp"

namespace reuseformer {

// W: the element type of the Linears' weights (linear_weights).
template <class T, class W = T>
struct feed_forward_weights {
  linear_weights<T, W> intermediate;  // [d_ff, d], [d_ff]
  linear_weights<T, W> output;        // [d, d_ff], [d]
};

template <class T, class Arch = simd::default_arch, class Products = packed_products>
class feed_forward {
 public:
  // `prefix` names tensors in error messages (prefix + "intermediate.dense.weight", ...).
  // Throws reuseformer::error on a wrongly shaped tensor.
  template <class W = T>
    requires packs_weights_of<Products, T, Arch, W>
  feed_forward(const feed_forward_weights<T, W>& w, index_t hidden, index_t intermediate, activation act,
               std::string_view prefix = "")
      : act_(act),
        intermediate_(w.intermediate, hidden, intermediate, std::string(prefix) + "intermediate.dense"),
        output_(w.output, intermediate, hidden, std::string(prefix) + "output.dense") {}

  [[nodiscard]] std::size_t parameter_bytes() const {
    return intermediate_.parameter_bytes() + output_.parameter_bytes();
  }

  // Planning and execution: for the encoder layer (through module_access).
 private:
  friend struct detail::module_access;

  struct buffers {
    T* hidden;  // [B*N, d_ff]
    thread_scratch<T> scratch;
  };

  [[nodiscard]] buffers plan(arena& a, index_t rows, int threads) const {
    buffers b{a.take<T>(rows * intermediate_.out_features()), {}};
    b.scratch = detail::take_thread_scratch<T>(
        a, std::max(intermediate_.scratch_elements(), output_.scratch_elements()), threads);
    return b;
  }

  // stream += FFN(x). Shapes: x, stream [rows, d]; x may equal stream.
  // `after(row, rows)`, when given, runs on rows of stream once they are final.
  template <class AfterRows = std::nullptr_t>
  void run(const T* x, T* stream, index_t rows, const buffers& b, AfterRows after = nullptr) const {
    const index_t d = intermediate_.in_features(), d_ff = intermediate_.out_features();
    const gemm::matrix<T> hidden{b.hidden, rows, d_ff, d_ff};
    const auto expand = [&]<class Act>(Act) {
      intermediate_.template forward<Act>(gemm::matrix<const T>{x, rows, d, d}, hidden, gemm::update::overwrite,
                                          b.scratch);
    };
    switch (act_) {
      case activation::gelu:
        expand(simd::gelu_erf{});
        break;
      case activation::gelu_tanh:
        expand(simd::gelu_tanh{});
        break;
      case activation::relu:
        expand(simd::relu{});
        break;
    }
    output_.forward(hidden, gemm::matrix<T>{stream, rows, d, d}, gemm::update::accumulate, b.scratch, after);
  }

 private:
  activation act_;
  linear<T, Arch, Products> intermediate_, output_;
};

}  // namespace reuseformer
