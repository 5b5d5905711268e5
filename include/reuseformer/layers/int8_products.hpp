#pragma once
// int8_products: the product backend (layers/product_backend.hpp) that stores
// each Linear's weight in int8 (symmetric, a scale per output column) and
// quantizes the activations to 8 bits per row as they are packed for the
// kernel (gemm/int8_quantization.hpp):
//   reuseformer::encoder<float, score_function::standard, simd::default_arch, int8_products>
// The products are exact 32-bit integer sums, dequantized as they are stored;
// everything around them (bias, activation, residual, LayerNorm, softmax, the
// attention scores Q·Kᵀ and A·V) stays float, as in ONNX Runtime's quantized
// BERT (QAttention, DynamicQuantizeMatMul). No calibration data: an
// activation's scale is its row's range, found as it is packed.
//
// On CPUs with AVX512-VNNI enabled by the build flags the kernel is vpdpbusd;
// elsewhere portable 32-bit integer code computes the same sums
// (gemm/int8_micro_kernel.hpp). A weight holds about a quarter of
// packed_products' bytes (parameter_bytes()). Layers of float only. Its
// Linears take float weights or int8 ones with their scales
// (linear_weights<float, std::int8_t>: a checkpoint's int8 weights).

#include <cstddef>
#include <span>
#include <type_traits>

#include "reuseformer/core/thread_scratch.hpp"
#include "reuseformer/core/tensor_view.hpp"
#include "reuseformer/gemm/int8_gemm.hpp"
#include "reuseformer/gemm/int8_packed_weights.hpp"
#include "reuseformer/gemm/matrix.hpp"
#include "reuseformer/layers/product_backend.hpp"

namespace reuseformer {

struct int8_products {
  template <class T, class Arch>
  class weight {
    static_assert(std::is_same_v<T, float>, "int8_products: int8 weights accumulate into float layers only");

   public:
    // The blocks `parts` (each [out_i, in]) stacked in order: float values
    // quantized per column, int8 ones (a checkpoint's, with their scales)
    // packed as they are.
    template <class Block>
      requires std::is_same_v<Block, gemm::matrix<const float>> || std::is_same_v<Block, gemm::int8_matrix>
    weight(std::span<const Block> parts, index_t in) : packed_(parts, in) {}

    [[nodiscard]] index_t in_features() const { return packed_.in_features(); }
    [[nodiscard]] index_t out_features() const { return packed_.out_features(); }
    // The packed int8 weight with its scales and column sums, padding included.
    [[nodiscard]] std::size_t bytes() const { return packed_.bytes(); }
    [[nodiscard]] index_t scratch_elements() const { return gemm::int8_scratch_elements<Arch>(in_features()); }

    template <class Epilogue>
    void multiply(gemm::matrix<const T> x, gemm::matrix<T> y, gemm::update mode, const thread_scratch<T>& scratch,
                  const Epilogue& epilogue) const {
      gemm::parallel_multiply_add<Arch>(x, packed_.view(), y, mode, scratch, epilogue);
    }

   private:
    gemm::int8_packed_weights<Arch> packed_;
  };
};

}  // namespace reuseformer
