#pragma once
// The attention core, per batch element b and head h (DESIGN §1.1, §1.2):
//   fresh head h < F:   A = softmax_row(scale * Q_bh K_bhᵀ + R_h + M_b)
//   reused head h >= F: A = S^{l-1}[h - F]       (read from the reuse state)
//   C_bh = A V_bh
// F = H - K is the number of fresh heads, R_h the optional relative-position
// bias, M_b the additive key mask. Q_bh is rows b*N .. b*N+N-1 and columns
// h*dh .. h*dh+dh-1 of Q [B*N, F*dh] (likewise K; V and C are [B*N, H*dh]):
// heads are read and written in place, never repacked.
//
// Work is split into tasks of (b, h, block of query_block query rows). A task
// holds only its [rows, N] slice of scores, so the memory is
// threads * query_block * N values however large B and H are, instead of the
// B*H*N*N a materialised score tensor would need. A fresh head that a later
// layer reuses is computed directly in its reuse-state slot instead. Under a
// causal mask a block only multiplies the keys up to its last row, skipping
// ~half of QKᵀ and AV.

#include <algorithm>

#include "reuseformer/attention/reuse_state.hpp"
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
  index_t batch;        // B >= 1
  index_t seq;          // N >= 1
  index_t heads;        // H >= 1
  index_t head_dim;     // dh >= 1
  bool causal;          // key j is visible from query i only when j <= i
  index_t fresh_heads;  // F in [0, H]: heads computed here; the others are reused
};

// Keys a block of queries multiplies, summed over the blocks of one sequence:
// N * N, or under a causal mask sum over blocks of rows * (last row + 1).
// The cost model counts score and context work with this same function.
[[nodiscard]] inline index_t block_query_key_pairs(index_t seq, bool causal) {
  if (!causal) return seq * seq;
  index_t pairs = 0;
  for (index_t first = 0; first < seq; first += query_block) {
    const index_t rows = std::min(query_block, seq - first);
    pairs += rows * (first + rows);
  }
  return pairs;
}

// Where the heads of one layer come from and go to.
template <class T>
struct head_io {
  // Q, K of the fresh heads: [B*N, F*dh] each (unused when F = 0).
  gemm::matrix<const T> q{}, k{};
  // Relative-position bias table [F, span] (span = 2P - 1), or null.
  const T* relative_bias = nullptr;
  index_t relative_span = 0;
  // Reused head F + j reads slot reused_slots[j] of `reused` (slot j when
  // reused_slots is null). Under a causal mask only keys up to the query block's
  // last row are read: reused rows must be zero after their diagonal, as every
  // causal layer's are.
  probability_store<const T> reused{};
  const index_t* reused_slots = nullptr;
  // Fresh head h is also stored in slot kept_slots[h] of `kept` unless that is
  // reuse_state_plan::no_slot (null kept_slots: none is kept).
  probability_store<T> kept{};
  const index_t* kept_slots = nullptr;
  // Optional copy of every head's probabilities: [B, H, N, N] (null: none).
  T* attentions = nullptr;
};

namespace detail {
// Per-thread layout: the score slice [rows, N], one additive row [N] (mask plus
// relative-position bias), then GEMM packing space.
template <class T>
[[nodiscard]] index_t score_elements(const problem& p) {
  return round_to_line<T>(std::min(query_block, p.seq) * p.seq);
}
}  // namespace detail

// Scratch elements one thread needs. Every block's products (fewer rows in the
// last block, fewer keys under a causal mask) are no larger than the first
// full block's, and GEMM scratch is monotone in the shape, so that one sizes all.
template <class T>
[[nodiscard]] index_t scratch_elements(const problem& p) {
  const index_t rows = std::min(query_block, p.seq);
  return detail::score_elements<T>(p) + round_to_line<T>(p.seq) +
         std::max(gemm::scratch_elements<T>(rows, p.seq, p.head_dim),
                  gemm::scratch_elements<T>(rows, p.head_dim, p.seq));
}

// Computes the context C (all heads of all batch elements).
// Shapes: v, context [B*N, H*dh] (any row stride >= H*dh); io as documented there.
// additive_mask is null or [B, N] with 0 (visible) / -inf (hidden) per key.
// Requires: scratch holds `threads` slices of scratch_stride >=
// scratch_elements<T>(p) elements, each 64-byte aligned.
// Guarantees: a query row with no visible key gets a zero context row; every
// probability row written to a slot or to io.attentions is complete (zeros for
// hidden keys), so a later layer can reuse it under any mask.
template <class Arch, class T>
void scaled_dot_product(const problem& p, T scale, const head_io<T>& io, gemm::matrix<const T> v,
                        gemm::matrix<T> context, const T* additive_mask, int threads, T* scratch,
                        index_t scratch_stride) {
  const index_t blocks = (p.seq + query_block - 1) / query_block;
  const index_t n = p.seq, dh = p.head_dim;
  const index_t scores_elements = detail::score_elements<T>(p);
  const index_t additive_elements = round_to_line<T>(n);
  const index_t bias_center = (io.relative_span - 1) / 2;  // P - 1

  parallel_for(p.batch * p.heads * blocks, threads, [&](index_t task, int thread) {
    const index_t block = task % blocks;
    const index_t h = task / blocks % p.heads;
    const index_t b = task / blocks / p.heads;
    const index_t first = block * query_block;
    const index_t rows = std::min(query_block, n - first);
    const index_t keys = p.causal ? first + rows : n;
    const index_t base = b * n;  // first row of batch element b

    T* const mine = scratch + thread * scratch_stride;
    T* const additive = mine + scores_elements;
    T* const gemm_scratch = additive + additive_elements;

    gemm::matrix<const T> probabilities{};
    if (h < p.fresh_heads) {
      const index_t slot = io.kept_slots ? io.kept_slots[h] : reuse_state_plan::no_slot;
      // A kept head is computed in its slot (full rows, stride N); otherwise in scratch.
      const gemm::matrix<T> scores = slot == reuse_state_plan::no_slot
                                         ? gemm::matrix<T>{mine, rows, keys, keys}
                                         : gemm::matrix<T>{io.kept.at(b, slot) + first * n, rows, keys, n};
      gemm::multiply_add<T>(T(1), io.q.block(base + first, rows, h * dh, dh), io.k.block(base, keys, h * dh, dh),
                            gemm::transpose::yes, scores, gemm_scratch, gemm::update::overwrite);
      const T* mask = additive_mask ? additive_mask + base : nullptr;
      for (index_t i = 0; i < rows; ++i) {
        const index_t active = p.causal ? first + i + 1 : keys;
        const T* row_add = mask;
        if (io.relative_bias) {
          // R[i, j] = E[h, clamp(j - i + P - 1, 0, 2P - 2)], added after scaling.
          const T* table = io.relative_bias + h * io.relative_span;
          for (index_t j = 0; j < active; ++j) {
            const index_t at = std::clamp(j - (first + i) + bias_center, index_t(0), io.relative_span - 1);
            additive[j] = table[at] + (mask ? mask[j] : T(0));
          }
          row_add = additive;
        }
        T* row = scores.data + i * scores.ld;
        simd::softmax<Arch>(row, keys, active, scale, row_add);
        if (scores.ld == n) std::fill(row + keys, row + n, T(0));  // causal tail of a stored row
      }
      probabilities = scores;
    } else {
      const index_t j = h - p.fresh_heads;
      const index_t slot = io.reused_slots ? io.reused_slots[j] : j;
      probabilities = {io.reused.at(b, slot) + first * n, rows, keys, n};
    }

    if (io.attentions) {
      T* out = io.attentions + ((b * p.heads + h) * n + first) * n;
      for (index_t i = 0; i < rows; ++i) {
        const T* row = probabilities.data + i * probabilities.ld;
        std::copy(row, row + keys, out + i * n);
        std::fill(out + i * n + keys, out + (i + 1) * n, T(0));
      }
    }
    gemm::multiply_add<T>(T(1), probabilities, v.block(base, keys, h * dh, dh), gemm::transpose::no,
                          context.block(base + first, rows, h * dh, dh), gemm_scratch, gemm::update::overwrite);
  });
}

}  // namespace reuseformer::attention
