#pragma once
// The reuse state: attention probabilities that flow from one layer to the next
// (docs/semantics.md §Score reuse).
//
// Layer l reuses K_l heads: its probability stack is
//   S^l = concat(A_fresh^l (H - K_l heads), S^{l-1}[0 : K_l]),
// and only S^l[0 : K_{l+1}] is ever read again. The state is a pool of slots,
// each holding one head's probabilities for the whole batch ([N_b, N_b] per
// sequence b: sum of N_b² values, B·N² for a dense batch).
// Which slot holds which head is decided once, from the schedule alone:
// - a fresh head of layer l that layer l+1 reads is written straight into a
//   free slot by the softmax (no copy);
// - a reused head that layer l+1 reads again (the chained case K_{l+1} > H - K_l)
//   keeps its slot: the head moves, the bytes do not;
// - a slot is freed after the last layer that reads it.
// While layer l runs, the pool holds the K_l heads it reads plus the fresh heads
// it keeps for layer l+1, and never anything else; between layers it holds
// exactly the K_{l+1} heads layer l+1 reads.
//
// Everything that moves probabilities between layers is here: the slot plan,
// the pool's layout (probability_store), what one layer's attention core reads
// and writes (head_io), how an encoder gives each layer its part of the pool
// (encoder_layer_heads), and what a caller passes to forward() (attention_io).

#include <algorithm>
#include <cstddef>
#include <span>
#include <type_traits>
#include <vector>

#include "reuseformer/core/tensor_view.hpp"
#include "reuseformer/gemm/matrix.hpp"

namespace reuseformer::attention {

class reuse_state_plan {
 public:
  // Requires a valid schedule (see encoder_config::validate): K_0 = 0, 0 <= K_l <= heads.
  reuse_state_plan(const std::vector<index_t>& schedule, index_t heads) {
    const auto layers = static_cast<index_t>(schedule.size());
    const auto reused = [&](index_t l) { return l < layers ? schedule[static_cast<std::size_t>(l)] : 0; };
    std::vector<index_t> free_slots, state;  // state: slot of S^{l-1}[j] for j < K_l
    reads_.resize(static_cast<std::size_t>(layers));
    keeps_.resize(static_cast<std::size_t>(layers));
    for (index_t l = 0; l < layers; ++l) {
      const index_t fresh = heads - reused(l), next = reused(l + 1);
      reads_[l] = state;
      keeps_[l].assign(static_cast<std::size_t>(fresh), no_slot);
      std::vector<index_t> next_state;
      for (index_t h = 0; h < next; ++h) {
        if (h < fresh) {  // a fresh head of layer l, kept for layer l+1
          index_t slot = slots_;
          if (!free_slots.empty()) {
            slot = free_slots.back();
            free_slots.pop_back();
          } else {
            ++slots_;
          }
          keeps_[l][static_cast<std::size_t>(h)] = slot;
          next_state.push_back(slot);
        } else {  // a reused head read again: same slot
          next_state.push_back(state[static_cast<std::size_t>(h - fresh)]);
        }
      }
      for (const index_t slot : state)  // read by layer l for the last time
        if (std::find(next_state.begin(), next_state.end(), slot) == next_state.end()) free_slots.push_back(slot);
      state = std::move(next_state);
      live_after_.push_back(static_cast<index_t>(state.size()));
    }
  }

  static constexpr index_t no_slot = -1;

  // Slots in the pool: the most heads ever live at once.
  [[nodiscard]] index_t slots() const { return slots_; }
  // Slot of S^{l-1}[j], for each head j < K_l that layer l reuses.
  [[nodiscard]] const std::vector<index_t>& reads(index_t l) const { return reads_[static_cast<std::size_t>(l)]; }
  // For each fresh head h of layer l: the slot it is written to, or no_slot
  // when no later layer reads it.
  [[nodiscard]] const std::vector<index_t>& keeps(index_t l) const { return keeps_[static_cast<std::size_t>(l)]; }
  // Heads the state holds after layer l (= K_{l+1}).
  [[nodiscard]] index_t heads_after(index_t l) const { return live_after_[static_cast<std::size_t>(l)]; }

 private:
  index_t slots_ = 0;
  std::vector<std::vector<index_t>> reads_, keeps_;
  std::vector<index_t> live_after_;
};

// Where a layer finds and puts probability heads, sequence by sequence: each
// sequence b holds `heads` matrices of `size_b` values one after the other,
// after those of the sequences before it. For attention the matrices are
// [N_b, N_b] (size_b = N_b²): slot s of sequence b is at
// base + heads * (sum over c < b of N_c²) + s * N_b², and a dense batch is a
// [B, heads, N, N] tensor. Decoding keeps one row of max_length per slot.
template <class T>
struct probability_store {
  T* base = nullptr;
  index_t heads = 0;

  // Slot `slot` of the sequence whose matrices hold `size` values, preceded by
  // `before` values per head (sequences::squares_before for [N_b, N_b] matrices).
  [[nodiscard]] T* at(index_t before, index_t size, index_t slot) const { return base + heads * before + slot * size; }

  operator probability_store<const T>() const  // NOLINT(google-explicit-constructor)
    requires(!std::is_const_v<T>)
  {
    return {base, heads};
  }
};

// Where the heads of one layer come from and go to.
template <class T>
struct head_io {
  // The operands of the fresh heads' logits Q Kᵀ: [T, F*dh] each (unused when F = 0).
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
  // Optional copy of every head's probabilities, H heads per sequence (null base: none).
  probability_store<T> attentions{};

  // The slot reused head F + j reads.
  [[nodiscard]] index_t reused_slot(index_t j) const { return reused_slots ? reused_slots[j] : j; }
  // The slot fresh head h is kept in, or reuse_state_plan::no_slot.
  [[nodiscard]] index_t kept_slot(index_t h) const { return kept_slots ? kept_slots[h] : reuse_state_plan::no_slot; }

  // Fresh head h's additive row for query `query` over keys [0, keys):
  // out[j] = R[query, j] + (mask ? mask[j] : 0), where the relative-position
  // bias is R[i, j] = E[h, clamp(j - i + P - 1, 0, 2P - 2)] (added after
  // scaling). Requires relative_bias.
  void relative_bias_row(index_t h, index_t query, index_t keys, const T* mask, T* out) const {
    const T* const table = relative_bias + h * relative_span;
    const index_t center = (relative_span - 1) / 2;  // P - 1
    for (index_t j = 0; j < keys; ++j)
      out[j] = table[std::clamp(j - query + center, index_t(0), relative_span - 1)] + (mask ? mask[j] : T(0));
  }
};

// The head_io of layer `layer` of an encoder whose reuse state is `pool`, laid
// out by `plan`: its reused heads from the slots the plan reads, its fresh heads
// that later layers read into the slots the plan keeps, and every head copied
// to `attentions` when its base is not null.
template <class T>
[[nodiscard]] head_io<T> encoder_layer_heads(const reuse_state_plan& plan, probability_store<T> pool, index_t layer,
                                             probability_store<T> attentions) {
  head_io<T> heads;
  heads.reused = pool;
  heads.reused_slots = plan.reads(layer).data();
  heads.kept = pool;
  heads.kept_slots = plan.keeps(layer).data();
  heads.attentions = attentions;
  return heads;
}

}  // namespace reuseformer::attention

namespace reuseformer {

// Attention probabilities in and out of a forward pass. Rank 4 for a dense
// batch [B, N, d]: tensors [B, heads, N, N]. Rank 1 for a packed batch
// (packed_attention_io): per sequence b, `heads` [N_b, N_b] matrices, sequence
// after sequence, heads · sum of N_b² values (the dense layout when all N_b = N).
template <class T, std::size_t Rank = 4>
struct attention_io {
  // The heads to reuse (K of them) when the module's first attention layer
  // reuses K > 0 heads and no earlier layer of the same call provides them (a
  // standalone attention or encoder layer). Must be empty otherwise.
  tensor_view<const T, Rank> reused{};
  // Empty, or one view per attention layer: filled with the probability stack
  // each layer used (H heads: fresh heads first, then reused heads). Off by
  // default: it costs H·N² values per sequence and layer.
  std::span<const tensor_view<T, Rank>> attentions{};
};

template <class T>
using packed_attention_io = attention_io<T, 1>;

namespace detail {
// The probability_store over a caller's attention_io tensor of `heads` heads
// per sequence (null base for an empty view).
template <class U, std::size_t Rank>
attention::probability_store<U> caller_store(const tensor_view<U, Rank>& view, index_t heads) {
  return {view.data(), heads};
}

// The head_io of a standalone attention layer of `heads` heads reusing
// `reused` of them: reused heads read from the caller's tensor, nothing kept
// for a later layer.
template <class T, std::size_t Rank>
attention::head_io<T> standalone_heads(const attention_io<T, Rank>& io, index_t heads, index_t reused) {
  attention::head_io<T> routing;
  routing.reused = caller_store(io.reused, reused);
  if (!io.attentions.empty()) routing.attentions = caller_store(io.attentions.front(), heads);
  return routing;
}
}  // namespace detail

}  // namespace reuseformer
