#pragma once
// The reuse state: attention probabilities that flow from one layer to the next
// (docs/semantics.md §Score reuse).
//
// Layer l reuses K_l heads: its probability stack is
//   S^l = concat(A_fresh^l (H - K_l heads), S^{l-1}[0 : K_l]),
// and only S^l[0 : K_{l+1}] is ever read again. The state is a pool of slots,
// each holding one head's probabilities for the whole batch ([B, N, N]).
// Which slot holds which head is decided once, from the schedule alone:
// - a fresh head of layer l that layer l+1 reads is written straight into a
//   free slot by the softmax (no copy);
// - a reused head that layer l+1 reads again (the chained case K_{l+1} > H - K_l)
//   keeps its slot: the head moves, the bytes do not;
// - a slot is freed after the last layer that reads it.
// While layer l runs, the pool holds the K_l heads it reads plus the fresh heads
// it keeps for layer l+1, and never anything else; between layers it holds
// exactly the K_{l+1} heads layer l+1 reads.

#include <algorithm>
#include <cstddef>
#include <type_traits>
#include <vector>

#include "reuseformer/core/tensor_view.hpp"

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
        if (std::find(next_state.begin(), next_state.end(), slot) == next_state.end())
          free_slots.push_back(slot);
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

// Where a layer finds and puts probability heads: slot s of batch element b is
// the [N, N] row-major matrix at base + s * slot_stride + b * batch_stride.
template <class T>
struct probability_store {
  T* base = nullptr;
  index_t slot_stride = 0;
  index_t batch_stride = 0;

  [[nodiscard]] T* at(index_t b, index_t slot) const { return base + slot * slot_stride + b * batch_stride; }

  operator probability_store<const T>() const  // NOLINT(google-explicit-constructor)
    requires(!std::is_const_v<T>)
  {
    return {base, slot_stride, batch_stride};
  }
};

}  // namespace reuseformer::attention
