#pragma once
// A batch of sequences laid end to end (docs/semantics.md §Packed batches).
//
// The rows of a [T, d] matrix hold B sequences one after the other: sequence b
// is rows offsets[b] .. offsets[b+1] - 1 (the `cu_seqlens` convention of
// FlashAttention's variable-length API). A dense batch [B, N, d] is the case
// where every sequence has N rows, and is described without an offsets array,
// so the code that walks sequences is the same for both.
//
// batch_shape is what sizes the buffers of a pass (the workspace plan):
// tokens T for row-wise work, the longest sequence for per-thread scratch, and
// the sum of squared lengths for attention probabilities ([N_b, N_b] per head
// and sequence). `sequences` adds where each sequence starts.

#include <algorithm>
#include <span>

#include "reuseformer/core/error.hpp"
#include "reuseformer/core/tensor_view.hpp"

namespace reuseformer {

struct batch_shape {
  index_t batch = 0;       // B sequences
  index_t max_length = 0;  // the longest N_b
  index_t tokens = 0;      // T = sum of N_b
  index_t squares = 0;     // sum of N_b²

  // B sequences of N tokens each.
  [[nodiscard]] static constexpr batch_shape dense(index_t batch, index_t seq) {
    return {batch, seq, batch * seq, batch * seq * seq};
  }
};

namespace detail {
// Throws reuseformer::error unless `offsets` is B + 1 >= 2 values starting at 0,
// non-decreasing and ending at `tokens` (the rows of the packed input); names
// the offending entry with what was expected and found.
inline void require_offsets(std::span<const index_t> offsets, index_t tokens) {
  require(offsets.size() >= 2, "offsets: expected B + 1 >= 2 values (at least one sequence), found ", offsets.size());
  require(offsets[0] == 0, "offsets[0]: expected 0, found ", offsets[0]);
  for (std::size_t b = 1; b < offsets.size(); ++b)
    require(offsets[b] >= offsets[b - 1], "offsets[", b, "]: expected a value >= offsets[", b - 1,
            "] = ", offsets[b - 1], " (non-decreasing), found ", offsets[b]);
  require(offsets.back() == tokens, "offsets[", offsets.size() - 1, "]: expected ", tokens,
          " (the token count T of the packed input), found ", offsets.back());
}
}  // namespace detail

class sequences {
 public:
  // B sequences of N tokens each, rows b*N .. b*N + N - 1.
  [[nodiscard]] static constexpr sequences dense(index_t batch, index_t seq) {
    return sequences(batch_shape::dense(batch, seq), nullptr);
  }

  // The sequences of `offsets` (B + 1 values, validated by detail::require_offsets),
  // which the caller keeps alive while this is used.
  [[nodiscard]] static sequences packed(std::span<const index_t> offsets) {
    batch_shape s{static_cast<index_t>(offsets.size()) - 1, 0, offsets.back(), 0};
    for (index_t b = 0; b < s.batch; ++b) {
      const index_t n = offsets[static_cast<std::size_t>(b) + 1] - offsets[static_cast<std::size_t>(b)];
      s.max_length = std::max(s.max_length, n);
      s.squares += n * n;
    }
    return sequences(s, offsets.data());
  }

  [[nodiscard]] const batch_shape& shape() const { return shape_; }
  [[nodiscard]] index_t batch() const { return shape_.batch; }
  [[nodiscard]] index_t max_length() const { return shape_.max_length; }
  [[nodiscard]] index_t tokens() const { return shape_.tokens; }

  // First row of sequence b, and its length N_b.
  [[nodiscard]] index_t start(index_t b) const { return offsets_ ? offsets_[b] : b * shape_.max_length; }
  [[nodiscard]] index_t length(index_t b) const { return offsets_ ? offsets_[b + 1] - offsets_[b] : shape_.max_length; }
  // Sum of N_c² over the sequences c < b: where sequence b's part of a
  // tensor of per-sequence [N, N] matrices starts.
  [[nodiscard]] index_t squares_before(index_t b) const {
    if (!offsets_) return b * shape_.max_length * shape_.max_length;
    index_t sum = 0;
    for (index_t c = 0; c < b; ++c) sum += length(c) * length(c);
    return sum;
  }

 private:
  constexpr sequences(const batch_shape& shape, const index_t* offsets) : shape_(shape), offsets_(offsets) {}

  batch_shape shape_;
  const index_t* offsets_;
};

namespace detail {
// The shape of the packed batch of `offsets`, which must be valid offsets of
// some token count (detail::require_offsets with T = the last offset).
[[nodiscard]] inline batch_shape packed_shape(std::span<const index_t> offsets) {
  require_offsets(offsets, offsets.empty() ? 0 : offsets.back());
  return sequences::packed(offsets).shape();
}
}  // namespace detail

}  // namespace reuseformer
