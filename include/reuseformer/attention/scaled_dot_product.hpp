#pragma once
// The attention core, per sequence b and head h (docs/semantics.md,
// §Standard attention to §Packed batches):
//   fresh head h < F:   A = softmax_row(scale * L_bh + R_h + M_b),  L_bh = Q_bh K_bhᵀ
//   reused head h >= F: A = S^{l-1}[h - F]       (read from the reuse state)
//   C_bh = A V_bh
// F = H - K is the number of fresh heads, R_h the optional relative-position
// bias, M_b the additive key mask. Q_bh is sequence b's rows (core/sequences.hpp:
// N_b rows from start(b); b*N .. b*N+N-1 in a dense batch) and columns
// h*dh .. h*dh+dh-1 of Q [T, F*dh] (likewise K; V and C are [T, H*dh]): heads
// are read and written in place, never repacked. Each sequence attends within
// itself only, so a packed batch of different lengths computes no padding;
// a dense batch is the case of equal lengths, through the same code. Q and K are the two
// operands of the logits product, whatever the score function made them
// (symmetric: K = Q; pairwise: Q P and Q).
//
// Work is split into tasks of one head (b, h), taken in blocks of query_block
// query rows. A task packs the head's keys and values once for the micro-kernel
// and reads them for each of its blocks; it holds only one block's
// [rows, N_b] slice of scores, so the memory is threads * query_block * max N_b
// values however large B and H are, instead of the B*H*N*N a materialised score
// tensor would need. Under a causal mask a block only multiplies the keys up to
// its last row, skipping ~half of QKᵀ and AV (its values are then packed per
// block: each block reads a different number of them).
//
// When the logits are symmetric by construction (problem::symmetric_logits)
// the task first computes the lower triangle of L (half the multiply-adds)
// into an [N, N] slice and mirrors it, or under a causal mask needs only the
// triangle. That trades threads * N * N values of scratch for half of the
// score products; the blocks of the head then proceed as above.
// A fresh head that a later layer reuses is computed directly in its
// reuse-state slot instead of scratch.

#include <algorithm>

#include "reuseformer/attention/reuse_state.hpp"
#include "reuseformer/core/parallel.hpp"
#include "reuseformer/core/sequences.hpp"
#include "reuseformer/core/tensor_view.hpp"
#include "reuseformer/core/thread_scratch.hpp"
#include "reuseformer/core/workspace.hpp"
#include "reuseformer/gemm/gemm.hpp"
#include "reuseformer/gemm/triangular.hpp"
#include "reuseformer/simd/softmax.hpp"
#include "reuseformer/simd/transpose.hpp"

namespace reuseformer::attention {

// Query rows per task: enough to make the two products efficient GEMMs, few
// enough to keep the score slice (query_block x N) in L2 for N up to ~2k, and a
// whole number of the micro-kernel's row tiles (the first multiple of its
// height from 64: 72 rows for 12-row tiles), so that no tile of a full block
// computes padding rows.
template <class T, class Arch = simd::default_arch>
inline constexpr index_t query_block = [] {
  constexpr index_t mr = gemm::detail::tile<T, Arch>::mr;
  return ceil_div(64, mr) * mr;
}();

struct problem {
  sequences batch;          // B >= 1 sequences of N_b >= 0 rows (max N_b >= 1)
  index_t heads;            // H >= 1
  index_t head_dim;         // dh >= 1
  bool causal;              // key j is visible from query i only when j <= i
  index_t fresh_heads;      // F in [0, H]: heads computed here; the others are reused
  bool symmetric_logits{};  // Q_bh K_bhᵀ is symmetric (the caller guarantees it): compute one triangle
};

// Keys a block of queries multiplies, summed over the blocks of one sequence:
// N * N, or under a causal mask sum over blocks of rows * (last row + 1).
// The cost model counts context work (A V) with this same function.
template <class T, class Arch = simd::default_arch>
[[nodiscard]] index_t block_query_key_pairs(index_t seq, bool causal) {
  if (!causal) return seq * seq;
  index_t pairs = 0;
  for (index_t first = 0; first < seq; first += query_block<T, Arch>) {
    const index_t rows = std::min(query_block<T, Arch>, seq - first);
    pairs += rows * (first + rows);
  }
  return pairs;
}

// Query/key pairs whose logit one head computes: the blocked count above, or
// for symmetric logits the lower triangle N(N+1)/2 (the register tiles the
// diagonal crosses add about half a tile per tile row on top).
// The cost model counts score work with this function.
template <class T, class Arch = simd::default_arch>
[[nodiscard]] index_t logit_pairs(index_t seq, bool causal, bool symmetric_logits) {
  return symmetric_logits ? seq * (seq + 1) / 2 : block_query_key_pairs<T, Arch>(seq, causal);
}

namespace detail {
// Row stride of a whole head's [N, N] logits in scratch: one cache line more
// than N, so that mirroring (which walks a column) does not map every row to
// the same cache set when N is a power of two.
template <class T>
[[nodiscard]] index_t symmetric_ld(index_t seq) {
  return round_to_line<T>(seq) + round_to_line<T>(1);
}

// One thread's scratch, in elements from its start: the score slice (a block's
// [rows, N], or a whole head's [N, symmetric_ld(N)] for symmetric logits), one
// additive row [N] (mask plus relative-position bias), the head's packed keys
// (fresh heads of non-symmetric logits), its packed values (without a causal
// mask), then packing space for the products.
template <class T, class Arch>
struct scratch_layout {
  index_t additive, keys, values, products, total;

  explicit scratch_layout(const problem& p) {
    const index_t n = p.batch.max_length(), dh = p.head_dim, rows = std::min(query_block<T, Arch>, n);
    const bool pack_keys = p.fresh_heads > 0 && !p.symmetric_logits;
    additive = round_to_line<T>(p.symmetric_logits ? n * symmetric_ld<T>(n) : rows * n);
    keys = additive + round_to_line<T>(n);
    values = keys + (pack_keys ? round_to_line<T>(gemm::packed_elements<T, Arch>(n, dh)) : 0);
    products = values + (p.causal ? 0 : round_to_line<T>(gemm::packed_elements<T, Arch>(dh, n)));
    index_t packing =
        p.causal ? gemm::scratch_elements<T, Arch>(rows, dh, n) : gemm::prepacked_scratch_elements<T, Arch>(n);
    if (pack_keys) packing = std::max(packing, gemm::prepacked_scratch_elements<T, Arch>(dh));
    if (p.fresh_heads > 0 && p.symmetric_logits)
      packing = std::max(packing, gemm::lower_scratch_elements<T, Arch>(n, dh));
    total = products + packing;
  }
};

// One task's sequence: its rows, its length, and where its [N_b, N_b]
// probability matrices start in a per-sequence store.
struct sequence_at {
  index_t index, start, length, squares_before;
};

// Calls body(s, h, first, last, thread) for heads h < `heads` of every sequence
// s (a sequence_at), on query rows [first, last) of it: the whole head, or, when
// there are fewer heads than twice the threads (batch 1 on many cores), runs of
// whole query blocks, so that every thread has work (each run packs the head's
// keys and values once). Symmetric logits are computed for the whole head at
// once. Runs are cut from the longest sequence; a shorter one has fewer (none
// for an empty sequence).
template <class T, class Arch, class Body>
void for_each_task(const problem& p, index_t heads, int threads, Body&& body) {
  const index_t batch = p.batch.batch();
  if (heads == 0 || p.batch.max_length() == 0) return;
  const index_t blocks = ceil_div(p.batch.max_length(), query_block<T, Arch>), tasks_wanted = 2 * index_t(threads);
  const index_t runs = p.symmetric_logits ? 1 : std::clamp(ceil_div(tasks_wanted, batch * heads), index_t(1), blocks);
  const index_t run_rows = ceil_div(blocks, runs) * query_block<T, Arch>;
  parallel_for(batch * heads * runs, threads, [&](index_t task, int thread) {
    const index_t first = task % runs * run_rows, head = task / runs, b = head / heads;
    const index_t length = p.batch.length(b);
    if (first < length)
      body(sequence_at{b, p.batch.start(b), length, p.batch.squares_before(b)}, head % heads, first,
           std::min(length, first + run_rows), thread);
  });
}

// Head (s, h)'s keys packed for its logits products, into `dst`.
template <class T, class Arch>
[[nodiscard]] gemm::packed_view<T, Arch> packed_keys(const problem& p, const head_io<T>& io, const sequence_at& s,
                                                     index_t h, T* dst) {
  return gemm::pack<T, Arch>(io.k.block(s.start, s.length, h * p.head_dim, p.head_dim), gemm::transpose::yes, dst);
}

// Logits Q_sh K_shᵀ of query rows [first, first + scores.rows) against the
// first scores.cols keys (all N_s, or up to the last row under a causal mask),
// from the head's packed keys, into `scores`.
template <class T, class Arch>
void block_logits(const problem& p, const head_io<T>& io, const sequence_at& s, index_t h, index_t first,
                  const gemm::packed_view<T, Arch>& keys, gemm::matrix<T> scores, T* gemm_scratch) {
  const index_t dh = p.head_dim;
  gemm::multiply_add<T, Arch>(T(1), io.q.block(s.start + first, scores.rows, h * dh, dh), keys, scores,
                              gemm::update::overwrite, gemm_scratch);
}

// Symmetric logits of the whole head into `scores` [N_s, N_s]: the lower
// triangle, mirrored (a causal mask never reads the mirror, so it is skipped).
template <class T, class Arch>
void symmetric_head_logits(const problem& p, const head_io<T>& io, const sequence_at& s, index_t h,
                           gemm::matrix<T> scores, T* gemm_scratch) {
  const index_t dh = p.head_dim;
  const gemm::matrix<const T> q = io.q.block(s.start, s.length, h * dh, dh);
  const gemm::matrix<const T> k = io.k.block(s.start, s.length, h * dh, dh);
  if (p.causal)
    gemm::multiply_lower<T, Arch>(T(1), q, k, scores, gemm_scratch);
  else
    gemm::multiply_symmetric<T, Arch>(T(1), q, k, scores, gemm_scratch);
}
}  // namespace detail

// Scratch elements one thread needs. Every block's products (fewer rows in the
// last block, fewer keys under a causal mask) are no larger than the first
// full block's, and GEMM scratch is monotone in the shape, so that one sizes all.
template <class T, class Arch = simd::default_arch>
[[nodiscard]] index_t scratch_elements(const problem& p) {
  return detail::scratch_layout<T, Arch>(p).total;
}

// Raw logits Q_bh K_bhᵀ (before scale, bias and mask) of every fresh head into
// out [B, F, N, ld] (N the longest sequence, ld >= N: the row stride; sequence
// b's head is the top-left [N_b, N_b] of its [N, ld] block), computed as
// scaled_dot_product() does: the score stage alone, for tests and benchmarks.
// Under a causal mask the entries after each query block's last row (symmetric
// logits: after the diagonal) are unspecified. Requires scratch as for
// scaled_dot_product().
template <class T, class Arch = simd::default_arch>
void logits(const problem& p, const head_io<T>& io, T* out, index_t ld, const thread_scratch<T>& scratch) {
  const index_t rows_per_head = p.batch.max_length();
  const detail::scratch_layout<T, Arch> layout(p);
  detail::for_each_task<T, Arch>(
      p, p.fresh_heads, scratch.threads,
      [&](const detail::sequence_at& s, index_t h, index_t first, index_t last, int thread) {
        T* const mine = scratch.slice(thread);
        T* const head = out + (s.index * p.fresh_heads + h) * rows_per_head * ld;
        if (p.symmetric_logits) {
          detail::symmetric_head_logits<T, Arch>(p, io, s, h, gemm::matrix<T>{head, s.length, s.length, ld},
                                                 mine + layout.products);
          return;
        }
        const gemm::packed_view<T, Arch> keys = detail::packed_keys<T, Arch>(p, io, s, h, mine + layout.keys);
        for (index_t block = first; block < last; block += query_block<T, Arch>) {
          const index_t rows = std::min(query_block<T, Arch>, last - block);
          detail::block_logits(p, io, s, h, block, keys,
                               gemm::matrix<T>{head + block * ld, rows, p.causal ? block + rows : s.length, ld},
                               mine + layout.products);
        }
      });
}

// Computes the context C (all heads of all sequences).
// Shapes: v, context [T, H*dh] (any row stride >= H*dh), T = p.batch.tokens();
// io as documented there. additive_mask is null or [T] with 0 (visible) / -inf
// (hidden) per key. Requires: scratch.stride >= scratch_elements<T>(p), slices
// 64-byte aligned; with
// p.symmetric_logits, Q_bh K_bhᵀ symmetric for every fresh head.
// Guarantees: a query row with no visible key gets a zero context row; every
// probability row written to a slot or to io.attentions is complete (zeros for
// hidden keys), so a later layer can reuse it under any mask; the rows of an
// empty sequence are none, so nothing is computed for it.
template <class T, class Arch = simd::default_arch>
void scaled_dot_product(const problem& p, T scale, const head_io<T>& io, gemm::matrix<const T> v,
                        gemm::matrix<T> context, const T* additive_mask, const thread_scratch<T>& scratch) {
  const index_t dh = p.head_dim;
  const detail::scratch_layout<T, Arch> layout(p);

  detail::for_each_task<T, Arch>(
      p, p.heads, scratch.threads,
      [&](const detail::sequence_at& s, index_t h, index_t first, index_t last, int thread) {
        const index_t n = s.length;
        T* const mine = scratch.slice(thread);
        T* const additive = mine + layout.additive;
        T* const gemm_scratch = mine + layout.products;
        const T* const mask = additive_mask ? additive_mask + s.start : nullptr;

        // The head's probabilities, row stride `ld`: reused rows are only read; a
        // fresh head's logits are written (in its slot when a later layer keeps it,
        // as full rows; otherwise in scratch: a block at a time, or the whole head
        // for symmetric logits) and turned into probabilities in place.
        const T* data = nullptr;
        T* fresh = nullptr;
        index_t ld = n;
        bool stored = false, per_block = false;
        gemm::packed_view<T, Arch> keys{};
        if (h >= p.fresh_heads) {
          const index_t j = h - p.fresh_heads;
          data = io.reused.at(s.squares_before, n * n, io.reused_slot(j));
        } else {
          const index_t slot = io.kept_slot(h);
          stored = slot != reuse_state_plan::no_slot;
          per_block = !stored && !p.symmetric_logits;
          if (!stored && p.symmetric_logits) ld = detail::symmetric_ld<T>(n);
          fresh = stored ? io.kept.at(s.squares_before, n * n, slot) : mine;
          data = fresh;
          if (p.symmetric_logits)
            detail::symmetric_head_logits<T, Arch>(p, io, s, h, gemm::matrix<T>{fresh, n, n, ld}, gemm_scratch);
          else
            keys = detail::packed_keys<T, Arch>(p, io, s, h, mine + layout.keys);
        }
        const gemm::matrix<const T> head_values = v.block(s.start, n, h * dh, dh);
        gemm::packed_view<T, Arch> values{};
        if (!p.causal) values = gemm::pack<T, Arch>(head_values, gemm::transpose::no, mine + layout.values);
        T* const copy = io.attentions.base ? io.attentions.at(s.squares_before, n * n, h) : nullptr;

        // Block by block: logits (fresh heads of non-symmetric logits), softmax
        // (fresh heads), the optional copy, then A V.
        for (index_t block = first; block < last; block += query_block<T, Arch>) {
          const index_t block_rows = std::min(query_block<T, Arch>, last - block);
          const index_t block_keys = p.causal ? block + block_rows : n;
          const index_t offset = per_block ? 0 : block * ld;
          if (fresh && !p.symmetric_logits)
            detail::block_logits(p, io, s, h, block, keys, gemm::matrix<T>{fresh + offset, block_rows, block_keys, ld},
                                 gemm_scratch);
          for (index_t i = 0; fresh && i < block_rows; ++i) {
            const index_t query = block + i, active = p.causal ? query + 1 : block_keys;
            const T* row_add = mask;
            if (io.relative_bias) {
              io.relative_bias_row(h, query, active, mask, additive);
              row_add = additive;
            }
            T* row = fresh + offset + i * ld;
            simd::softmax<T, Arch>(row, block_keys, active, scale, row_add);
            if (stored) std::fill(row + block_keys, row + n, T(0));  // causal tail of a stored row
          }
          const gemm::matrix<const T> probabilities{data + offset, block_rows, block_keys, ld};
          for (index_t i = 0; copy && i < block_rows; ++i) {
            const T* row = probabilities.data + i * ld;
            T* out = copy + (block + i) * n;
            std::copy(row, row + block_keys, out);
            std::fill(out + block_keys, out + n, T(0));
          }
          const gemm::matrix<T> out = context.block(s.start + block, block_rows, h * dh, dh);
          if (p.causal)
            gemm::multiply_add<T, Arch>(T(1), probabilities, head_values.block(0, block_keys, 0, dh),
                                        gemm::transpose::no, out, gemm::update::overwrite, gemm_scratch);
          else
            gemm::multiply_add<T, Arch>(T(1), probabilities, values, out, gemm::update::overwrite, gemm_scratch);
        }
      });
}

}  // namespace reuseformer::attention
