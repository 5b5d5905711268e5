#pragma once
// bf16_products: the product backend (layers/product_backend.hpp) that stores
// each Linear's weight in bfloat16 and accumulates in float:
//   reuseformer::encoder<float, score_function::standard, simd::default_arch, bf16_products>
// Activations are rounded to bfloat16 as they are packed for the kernel; every
// sum, and everything around the products (bias, activation, residual,
// LayerNorm, softmax, the attention scores Q·Kᵀ and A·V), stays float.
//
// On CPUs with AVX512-BF16 enabled by the build flags the kernel is
// vdpbf16ps; elsewhere the same bf16 weights are widened to float inside the
// kernel (gemm/bf16_micro_kernel.hpp). A weight holds half the bytes of
// packed_products' (parameter_bytes()). Layers of float only; their Linear
// weights may be given as float or as bfloat16 (linear_weights<float, bfloat16>).

#include <cstddef>
#include <span>
#include <type_traits>

#include "reuseformer/core/bfloat16.hpp"
#include "reuseformer/core/thread_scratch.hpp"
#include "reuseformer/core/tensor_view.hpp"
#include "reuseformer/gemm/bf16_gemm.hpp"
#include "reuseformer/gemm/bf16_packed_weights.hpp"
#include "reuseformer/gemm/matrix.hpp"
#include "reuseformer/layers/product_backend.hpp"

namespace reuseformer {

struct bf16_products {
  template <class T, class Arch>
  class weight {
    static_assert(std::is_same_v<T, float>, "bf16_products: bfloat16 weights accumulate into float layers only");

   public:
    // The blocks `parts` (each [out_i, in]) stacked in order: float values
    // rounded to bfloat16 (to nearest even), bfloat16 ones packed as they are.
    template <class W>
      requires std::is_same_v<W, float> || std::is_same_v<W, bfloat16>
    weight(std::span<const gemm::matrix<const W>> parts, index_t in) : packed_(parts, in) {}

    [[nodiscard]] index_t in_features() const { return packed_.in_features(); }
    [[nodiscard]] index_t out_features() const { return packed_.out_features(); }
    // The packed bf16 weight, its padding included.
    [[nodiscard]] std::size_t bytes() const { return packed_.bytes(); }
    [[nodiscard]] index_t scratch_elements() const { return gemm::bf16_scratch_elements<Arch>(in_features()); }

    template <class Epilogue>
    void multiply(gemm::matrix<const T> x, gemm::matrix<T> y, gemm::update mode, const thread_scratch<T>& scratch,
                  const Epilogue& epilogue) const {
      gemm::parallel_multiply_add<Arch>(x, packed_.view(), y, mode, scratch, epilogue);
    }

   private:
    gemm::bf16_packed_weights<Arch> packed_;
  };
};

}  // namespace reuseformer
