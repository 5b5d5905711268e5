#pragma once
// The two products of the attention core, Q·Kᵀ and A·V
// (attention/scaled_dot_product.hpp), as a compile-time choice, the last
// template parameter of scaled_dot_product() and logits():
//   native_score_products  (default) in T, by the library's GEMM;
//   bf16_score_products    float layers: operands rounded to bfloat16 (to
//                          nearest even) as they are packed, products by the
//                          bf16 kernel (gemm/bf16_gemm.hpp), sums in float.
// Everything between the two products (scale, bias, mask, softmax) stays T,
// and so does the symmetric triangle of problem::symmetric_logits.
//
// P::products<T, Arch> provides, for a head's keys (op(B) = Kᵀ) and values
// (op(B) = V), packed once and read by every query block:
//   packed                                     the packed operand's view
//   index_t packed_elements(n, k)             elements of T pack() writes for op(B) [k, n]
//   packed pack(b, transpose op, T* dst)      b [n, k] (transpose::yes) or [k, n] (no)
//   index_t scratch_elements(k)               multiply()'s scratch for inner size k
//   void multiply(a, b, c, T* scratch)        C = A op(B) on the calling thread
// with dst and scratch 64-byte aligned.

#include <type_traits>

#include "reuseformer/core/bfloat16.hpp"
#include "reuseformer/core/tensor_view.hpp"
#include "reuseformer/gemm/bf16_gemm.hpp"
#include "reuseformer/gemm/bf16_packed_weights.hpp"
#include "reuseformer/gemm/gemm.hpp"
#include "reuseformer/gemm/matrix.hpp"
#include "reuseformer/gemm/packed_weights.hpp"

namespace reuseformer::attention {

struct native_score_products {
  template <class T, class Arch>
  struct products {
    using packed = gemm::packed_view<T, Arch>;
    [[nodiscard]] static index_t packed_elements(index_t n, index_t k) { return gemm::packed_elements<T, Arch>(n, k); }
    static packed pack(gemm::matrix<const T> b, gemm::transpose op, T* dst) { return gemm::pack<T, Arch>(b, op, dst); }
    [[nodiscard]] static index_t scratch_elements(index_t k) { return gemm::prepacked_scratch_elements<T, Arch>(k); }
    static void multiply(gemm::matrix<const T> a, const packed& b, gemm::matrix<T> c, T* scratch) {
      gemm::multiply_add<T, Arch>(T(1), a, b, c, scratch, gemm::update::overwrite);
    }
  };
};

struct bf16_score_products {
  template <class T, class Arch>
  struct products {
    static_assert(std::is_same_v<T, float>, "bf16_score_products: bfloat16 operands accumulate into float only");
    using packed = gemm::bf16_packed_view<Arch>;
    // Two bf16 per float, rounded up.
    [[nodiscard]] static index_t packed_elements(index_t n, index_t k) {
      return ceil_div(gemm::bf16_packed_elements<Arch>(n, k), 2);
    }
    static packed pack(gemm::matrix<const float> b, gemm::transpose op, float* dst) {
      return gemm::pack_bf16<Arch>(b, op, reinterpret_cast<bfloat16*>(dst));
    }
    [[nodiscard]] static index_t scratch_elements(index_t k) { return gemm::bf16_scratch_elements<Arch>(k); }
    static void multiply(gemm::matrix<const float> a, const packed& b, gemm::matrix<float> c, float* scratch) {
      gemm::multiply_add<Arch>(a, b, c, scratch, gemm::update::overwrite);
    }
  };
};

}  // namespace reuseformer::attention
