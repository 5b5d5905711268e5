#pragma once
// The product backend of the layers: which kernel multiplies activations by a
// Linear's weight. A compile-time choice, the last template parameter of
// linear, feed_forward, multi_head_attention, encoder_layer and encoder:
//   packed_products  (default) the library's own GEMM on weights prepacked at
//                    construction (gemm/packed_weights.hpp);
//   eigen::products  Eigen's sequential product kernel (eigen/products.hpp),
//                    the baseline the benchmarks measure ours against;
//   bf16_products    bfloat16 weights and products, float sums
//                    (layers/bf16_products.hpp);
//   int8_products    int8 weights, activations quantized per row, exact
//                    integer sums (layers/int8_products.hpp).
// All split a product across the workspace's threads the same way
// (gemm::detail::parallel_parts) and run the same epilogues; only the kernel
// on each part differs.
//
// A backend B provides B::weight<T, Arch> (Arch: the SIMD architecture of the
// layer that owns it), built once per Linear from the stacked
// weight blocks, which the Linear keeps for its lifetime:
//   weight(std::span<const weight_block<W>> parts, index_t in)   parts [out_i, in]
//     for W = T, for W = bfloat16 where the backend stores bfloat16
//     (bf16_products: a BF16 checkpoint's values, packed as they are), and
//     for W = std::int8_t where it stores int8 (int8_products: a checkpoint's
//     int8 values with their per-row scales, packed as they are)
//   index_t in_features(), out_features()
//   std::size_t bytes()              what it holds (reported as parameter bytes)
//   index_t scratch_elements()       per-thread scratch of multiply(), any rows and threads
//   void multiply(x, y, mode, scratch, epilogue)       scratch: thread_scratch<T>
//     y = x Wᵀ (update::overwrite) or y += x Wᵀ (update::accumulate), x [rows, in],
//     y [rows, out]; then the epilogue (gemm::no_epilogue's form, or gemm::rows_epilogue)
//     on y's final values. Allocates nothing.

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>

#include "reuseformer/core/tensor_view.hpp"
#include "reuseformer/core/thread_scratch.hpp"
#include "reuseformer/gemm/gemm.hpp"
#include "reuseformer/gemm/matrix.hpp"
#include "reuseformer/gemm/packed_weights.hpp"

namespace reuseformer {

namespace detail {
template <class W>
struct weight_block_of {
  using type = gemm::matrix<const W>;
};
template <>
struct weight_block_of<std::int8_t> {
  using type = gemm::int8_matrix;  // int8 values mean nothing without their scales
};
}  // namespace detail

// A block of a Linear's weight of W elements, as a backend packs it.
template <class W>
using weight_block = typename detail::weight_block_of<W>::type;

// Whether B's weight for layers of T is built from blocks of W elements.
template <class B, class T, class Arch, class W>
concept packs_weights_of =
    std::constructible_from<typename B::template weight<T, Arch>, std::span<const weight_block<W>>, index_t>;

template <class B, class T, class Arch>
concept product_backend = requires(const typename B::template weight<T, Arch>& w, gemm::matrix<const T> x,
                                   gemm::matrix<T> y, const thread_scratch<T>& scratch) {
  typename B::template weight<T, Arch>;
  requires packs_weights_of<B, T, Arch, T>;
  { w.in_features() } -> std::same_as<index_t>;
  { w.out_features() } -> std::same_as<index_t>;
  { w.bytes() } -> std::same_as<std::size_t>;
  { w.scratch_elements() } -> std::same_as<index_t>;
  w.multiply(x, y, gemm::update::overwrite, scratch, gemm::no_epilogue{});
};

// The default: the library's own micro-kernel reading weights packed once into
// its panel layout, so no forward pass packs a weight.
struct packed_products {
  template <class T, class Arch>
  class weight {
   public:
    weight(std::span<const gemm::matrix<const T>> parts, index_t in) : packed_(parts, in) {}

    [[nodiscard]] index_t in_features() const { return packed_.in_features(); }
    [[nodiscard]] index_t out_features() const { return packed_.out_features(); }
    // The packed weight, its last strip padded to the tile width.
    [[nodiscard]] std::size_t bytes() const { return packed_.bytes(); }
    [[nodiscard]] index_t scratch_elements() const { return gemm::prepacked_scratch_elements<T, Arch>(in_features()); }

    template <class Epilogue>
    void multiply(gemm::matrix<const T> x, gemm::matrix<T> y, gemm::update mode, const thread_scratch<T>& scratch,
                  const Epilogue& epilogue) const {
      gemm::parallel_multiply_add<T, Arch>(T(1), x, packed_.view(), y, mode, scratch, epilogue);
    }

   private:
    gemm::packed_weights<T, Arch> packed_;
  };
};

}  // namespace reuseformer
