#pragma once
// The attention core for one new token per sequence, against the cache
// (attention/layer_cache.hpp): scaled_dot_product's formulas for a single query
// row (docs/semantics.md §Incremental decoding). Per sequence b, whose new token
// is at position t = positions[b] (its key and value already stored, so the
// cache holds tokens 0 .. t), and head h:
//   fresh head h < F:  a = softmax(scale · q_bh Kᵀ_bh[:, 0..t] + R_h[t, 0..t])
//   reused head h:     a = the reuse state's row for this token (the layer below's)
//   c_bh = a V_bh[0..t]
// A task is one (b, h); it holds one row of logits and one of bias, so the
// scratch is two rows of max_length values per thread.

#include "reuseformer/attention/layer_cache.hpp"
#include "reuseformer/attention/reuse_state.hpp"
#include "reuseformer/core/parallel.hpp"
#include "reuseformer/core/thread_scratch.hpp"
#include "reuseformer/core/workspace.hpp"
#include "reuseformer/gemm/matrix.hpp"
#include "reuseformer/simd/softmax.hpp"
#include "reuseformer/simd/vector_matrix.hpp"

namespace reuseformer::attention {

// Scratch elements one thread needs for tokens of caches of max_length.
template <class T>
[[nodiscard]] index_t decode_scratch_elements(index_t max_length) {
  return 2 * round_to_line<T>(max_length);
}

// Context rows of the new tokens, all heads: context [B, H·dh].
// io.q holds the queries [B, F·dh] (Q, or Q P for pairwise scores); io.k is
// unused (the keys are the cache's); io.relative_bias as for
// scaled_dot_product. The probability stores hold one row of max_length per
// sequence and slot (io.reused.at(b * max_length, max_length, s)): the reused
// rows are read (t + 1 entries), the kept ones written
// (t + 1 entries) for the slots io.kept_slots names. io.attentions must have no base.
// Requires: scratch.stride >= decode_scratch_elements<T>(cache.max_length),
// slices 64-byte aligned; positions[b] < max_length.
template <class T, class Arch = simd::default_arch>
void decode_attention(const layer_cache<T>& cache, const index_t* positions, T scale, const head_io<T>& io,
                      gemm::matrix<T> context, const thread_scratch<T>& scratch) {
  const index_t heads = cache.heads, fresh_heads = cache.fresh_heads, dh = cache.head_dim, n = cache.max_length;
  parallel_for(context.rows * heads, scratch.threads, [&](index_t task, int thread) {
    const index_t b = task / heads, h = task % heads, query = positions[b], keys = query + 1;
    T* const mine = scratch.slice(thread);
    const T* row = nullptr;
    if (h >= fresh_heads) {
      const index_t j = h - fresh_heads;
      row = io.reused.at(b * n, n, io.reused_slot(j));
    } else {
      const index_t slot = io.kept_slot(h);
      T* const logits = slot == reuse_state_plan::no_slot ? mine : io.kept.at(b * n, n, slot);
      simd::vector_matrix<T, Arch>(io.q.data + b * io.q.ld + h * dh, dh, cache.head_keys(b, h), keys, n, logits);
      const T* additive = nullptr;
      if (io.relative_bias) {
        T* const bias = mine + round_to_line<T>(n);
        io.relative_bias_row(h, query, keys, nullptr, bias);
        additive = bias;
      }
      simd::softmax<T, Arch>(logits, keys, keys, scale, additive);
      row = logits;
    }
    simd::vector_matrix<T, Arch>(row, keys, cache.head_values(b, h), dh, dh, context.data + b * context.ld + h * dh);
  });
}

}  // namespace reuseformer::attention
