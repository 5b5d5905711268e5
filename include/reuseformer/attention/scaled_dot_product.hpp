#pragma once
// The attention core, per batch element b and head h (DESIGN §1.1):
//   A = softmax_row(scale * Q_bh K_bhᵀ + M_b),  C_bh = A V_bh
// Q_bh is rows b*N .. b*N+N-1 and columns h*dh .. h*dh+dh-1 of Q [B*N, H*dh]
// (likewise K, V, C): heads are read and written in place, never repacked.
//
// Work is split into tasks of (b, h, block of query_block query rows). A task
// holds only its [rows, N] slice of scores, so the memory is
// threads * query_block * N values however large B and H are, instead of the
// B*H*N*N a materialised score tensor would need. Under a causal mask a block
// only multiplies the keys up to its last row, skipping ~half of QKᵀ and AV.

#include <algorithm>

#include "reuseformer/core/parallel.hpp"
#include "reuseformer/core/tensor_view.hpp"
#include "reuseformer/core/workspace.hpp"
#include "reuseformer/gemm/gemm.hpp"
#include "reuseformer/simd/softmax.hpp"

namespace reuseformer::attention {

// Query rows per task: enough to make the two products efficient GEMMs, few
// enough to keep the score slice (query_block x N) in L2 for N up to ~2k.
inline constexpr index_t query_block = 64;

struct problem {
  index_t batch;      // B >= 1
  index_t seq;        // N >= 1
  index_t heads;      // H >= 1
  index_t head_dim;   // dh >= 1
  bool causal;        // key j is visible from query i only when j <= i
};

namespace detail {
// Elements of one task's score slice, rounded up to whole cache lines so that the
// GEMM scratch after it stays aligned.
template <class T>
[[nodiscard]] index_t score_elements(const problem& p) {
  constexpr index_t line = workspace_alignment / sizeof(T);
  return (std::min(query_block, p.seq) * p.seq + line - 1) / line * line;
}
}  // namespace detail

// Scratch elements one thread needs (scores plus GEMM packing).
template <class T>
[[nodiscard]] index_t scratch_elements(const problem& p) {
  const index_t rows = std::min(query_block, p.seq);
  return detail::score_elements<T>(p) + std::max(gemm::scratch_elements<T>(rows, p.seq, p.head_dim),
                           gemm::scratch_elements<T>(rows, p.head_dim, p.seq));
}

// Computes C (all heads of all batch elements) from Q, K, V.
// Shapes: q, k, v, context are [B*N, H*dh] (any row stride >= H*dh).
// additive_mask is null or [B, N] with 0 (visible) / -inf (hidden) per key.
// Requires: scratch holds `threads` slices of scratch_stride >=
// scratch_elements<T>(p) elements, each 64-byte aligned.
// Guarantees: a query row with no visible key gets a zero context row.
template <class Arch, class T>
void scaled_dot_product(const problem& p, T scale, gemm::matrix<const T> q,
                        gemm::matrix<const T> k, gemm::matrix<const T> v,
                        gemm::matrix<T> context, const T* additive_mask, int threads, T* scratch,
                        index_t scratch_stride) {
  const index_t blocks = (p.seq + query_block - 1) / query_block;
  const index_t dh = p.head_dim;
  const index_t scores_elements = detail::score_elements<T>(p);

  parallel_for(p.batch * p.heads * blocks, threads, [&](index_t task, int thread) {
    const index_t block = task % blocks;
    const index_t h = task / blocks % p.heads;
    const index_t b = task / blocks / p.heads;
    const index_t first = block * query_block;
    const index_t rows = std::min(query_block, p.seq - first);
    const index_t keys = p.causal ? first + rows : p.seq;
    const index_t base = b * p.seq;  // first row of batch element b

    T* const mine = scratch + thread * scratch_stride;
    const gemm::matrix<T> scores{mine, rows, keys, keys};
    T* const gemm_scratch = mine + scores_elements;

    gemm::multiply_add<T>(T(1), q.block(base + first, rows, h * dh, dh),
                          k.block(base, keys, h * dh, dh), gemm::transpose::yes, scores,
                          gemm_scratch, gemm::update::overwrite);
    const T* mask = additive_mask ? additive_mask + base : nullptr;
    for (index_t i = 0; i < rows; ++i)
      simd::softmax<Arch>(scores.data + i * keys, keys, p.causal ? first + i + 1 : keys, scale, mask);

    gemm::multiply_add<T>(T(1), scores, v.block(base, keys, h * dh, dh), gemm::transpose::no,
                          context.block(base + first, rows, h * dh, dh), gemm_scratch,
                          gemm::update::overwrite);
  });
}

}  // namespace reuseformer::attention
