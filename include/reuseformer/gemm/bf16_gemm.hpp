#pragma once
// Products with a bfloat16 weight: C = A op(B) or C += A op(B), with A float
// (rounded to bf16, to nearest even, as its strips are packed), op(B) a
// bf16_packed_weights, and every sum accumulated in float. The blocking is the
// float products' (kernel_product.hpp), the kernel bf16_micro_kernel.hpp's.

#include <algorithm>

#include "reuseformer/core/parallel.hpp"
#include "reuseformer/core/tensor_view.hpp"
#include "reuseformer/core/thread_scratch.hpp"
#include "reuseformer/gemm/bf16_micro_kernel.hpp"
#include "reuseformer/gemm/bf16_packed_weights.hpp"
#include "reuseformer/gemm/blocking.hpp"
#include "reuseformer/gemm/gemm.hpp"
#include "reuseformer/gemm/kernel_product.hpp"
#include "reuseformer/gemm/matrix.hpp"
#include "reuseformer/simd/arch.hpp"

namespace reuseformer::gemm {

// Scratch elements (floats) one thread needs for a product of inner size k
// with a bf16 weight, any rows and columns: the kernel's A strip, and on the
// widening path its float copy of a weight panel. Never decreases when k
// grows (k = 800 is two blocks of 400, shallower than k = 768's one), so
// scratch planned for k serves every smaller inner size.
template <class Arch = simd::default_arch>
[[nodiscard]] index_t bf16_scratch_elements(index_t k) {
  if (k == 0) return 0;
  const index_t deepest = std::min(k, detail::kc_max<bfloat16>);  // the deepest block of any k' <= k
  return detail::bf16_kernel<Arch>::scratch_elements(detail::round_up(deepest, 2), detail::nc_max);
}

// C = A op(B) (update::overwrite) or C += A op(B) (update::accumulate) split
// over up to scratch.threads threads, then `epilogue` on C's final values (see
// no_epilogue, rows_epilogue). Shapes: A [m, k], b a view of [k, n], C [m, n].
// Requires: scratch.stride >= bf16_scratch_elements<Arch>(k), a multiple of
// 16, scratch.data 64-byte aligned; C does not overlap A. Must not be called
// from inside a parallel_for task.
template <class Arch = simd::default_arch, class Epilogue = no_epilogue>
void parallel_multiply_add(matrix<const float> a, const bf16_packed_view<Arch>& b, matrix<float> c, update mode,
                           const thread_scratch<float>& scratch, const Epilogue& epilogue = {}) {
  detail::parallel_kernel_product<detail::bf16_kernel<Arch>, Arch>(a, b, c, mode, scratch, epilogue);
}

}  // namespace reuseformer::gemm
