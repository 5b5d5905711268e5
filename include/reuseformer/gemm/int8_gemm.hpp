#pragma once
// Products with an int8 weight: C = A op(B) or C += A op(B), with A float
// (quantized per row to u8 with a zero point as its strips are packed:
// int8_quantization.hpp), op(B) an int8_packed_weights, the products summed
// exactly in 32-bit integers and dequantized as each register tile is stored
// (int8_micro_kernel.hpp), so the epilogues then run on float values still in
// cache, with no pass over C in between. The blocking is the float
// products' (kernel_product.hpp), in one depth block.

#include <algorithm>

#include "reuseformer/core/parallel.hpp"
#include "reuseformer/core/tensor_view.hpp"
#include "reuseformer/core/thread_scratch.hpp"
#include "reuseformer/gemm/blocking.hpp"
#include "reuseformer/gemm/gemm.hpp"
#include "reuseformer/gemm/int8_micro_kernel.hpp"
#include "reuseformer/gemm/int8_packed_weights.hpp"
#include "reuseformer/gemm/kernel_product.hpp"
#include "reuseformer/gemm/matrix.hpp"
#include "reuseformer/simd/arch.hpp"

namespace reuseformer::gemm {

// Scratch elements (floats) one thread needs for a product of inner size k
// with an int8 weight, any rows and columns: the kernel's quantized A strip.
// Never decreases when k grows.
template <class Arch = simd::default_arch>
[[nodiscard]] index_t int8_scratch_elements(index_t k) {
  using kernel = detail::int8_kernel<Arch>;
  return k == 0 ? 0 : kernel::scratch_elements(detail::round_up(k, kernel::depth_step), detail::nc_max);
}

// C = A op(B) (update::overwrite) or C += A op(B) (update::accumulate) split
// over up to scratch.threads threads, then `epilogue` on C's final values (see
// no_epilogue, rows_epilogue). Shapes: A [m, k] (finite values), b a view of
// [k, n], C [m, n]. Requires: scratch.stride >= int8_scratch_elements<Arch>(k),
// a multiple of 16, scratch.data 64-byte aligned; C does not overlap A. Must
// not be called from inside a parallel_for task.
template <class Arch = simd::default_arch, class Epilogue = no_epilogue>
void parallel_multiply_add(matrix<const float> a, const int8_packed_view<Arch>& b, matrix<float> c, update mode,
                           const thread_scratch<float>& scratch, const Epilogue& epilogue = {}) {
  detail::parallel_kernel_product<detail::int8_kernel<Arch>, Arch>(a, b, c, mode, scratch, epilogue);
}

}  // namespace reuseformer::gemm
