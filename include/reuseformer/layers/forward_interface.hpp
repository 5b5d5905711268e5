#pragma once
// The public interface every module shares (workspace_bytes, make_workspace,
// forward), built once from what each module plans and runs: input/output
// validation, the workspace plan, the key-padding mask conversion, and the call.
//
// A module (attention, an encoder layer, the encoder) maps a batch of sequences
// of d-wide tokens to another, either dense ([B, N, d]) or packed ([T, d] with
// sequence offsets, core/sequences.hpp), and provides, as a CRTP derived class
// (plan, run and buffers private, with forward_interface and module_access as
// friends):
//   static constexpr bool residual;   // output = input + f(input)  (else output = f(input))
//   index_t hidden_size() const, heads() const;
//   index_t attention_layers() const;    // attention layers inside (1 or L)
//   index_t first_reused_heads() const;  // K of the first attention layer
//   buffers plan(arena&, const batch_shape&, int threads) const;
//   template <std::size_t Rank>
//   void run(const T* x, T* stream, const sequences&, const T* additive_mask,
//            const buffers&, const attention_io<T, Rank>&) const;
// A plan is for a thread count; the buffers it returns carry it (e.g. in a
// thread_scratch), so running them needs no other.
// run() adds f(x) to `stream`, a [T, d] row-major matrix; for residual modules
// x is the stream itself. A dense batch is run as B sequences of N tokens, so
// both forms share every line of the modules.
// This base derives the public interface from them, so that the byte count
// reported by workspace_bytes() is the plan forward() carves, by construction.
// A module built from others (an encoder layer, the encoder) plans and runs its
// parts through module_access; the decoder also runs an attention module's
// stages through it.

#include <algorithm>
#include <cstddef>
#include <functional>
#include <limits>
#include <span>
#include <utility>

#include "reuseformer/attention/attention_mask.hpp"
#include "reuseformer/attention/reuse_state.hpp"
#include "reuseformer/core/error.hpp"
#include "reuseformer/core/thread_scratch.hpp"
#include "reuseformer/core/sequences.hpp"
#include "reuseformer/core/tensor_view.hpp"
#include "reuseformer/core/workspace.hpp"

namespace reuseformer {

// What a residual module's forward() does with the padded positions of a
// Hugging Face attention_mask.
enum class padding {
  // Compute them like PyTorch: padded queries attend to their sequence's real
  // tokens, and their outputs are what that gives. Today's default.
  compute,
  // Skip them: each row of the mask must be right-padded (1s, then 0s); the
  // real tokens are packed, run as a packed batch (no work for padding), and
  // put back. Outputs at padded positions are 0; at real tokens they equal
  // padding::compute's up to rounding.
  skip,
};

}  // namespace reuseformer

namespace reuseformer::detail {

// Whether [a, a + count) and [b, b + count) share no element (std::less: a
// total order even for pointers into different objects).
template <class T>
[[nodiscard]] bool disjoint(const T* a, const T* b, index_t count) {
  const std::less<const T*> before;
  return !before(b, a + count) || !before(a, b + count);
}

// The private planning and execution of a module, for its base and for the
// modules built from it.
struct module_access {
  // A module's private buffers type, named in a member class so that access is
  // checked here, where the friendship holds (Clang checks an alias template's
  // access where the alias is used).
  template <class Module>
  struct buffers_of {
    using type = typename Module::buffers;
  };
  template <class Module>
  using buffers = typename buffers_of<Module>::type;

  template <class Module, class... Args>
  static auto plan(const Module& m, Args&&... args) {
    return m.plan(std::forward<Args>(args)...);
  }
  // Sizes `a` for the largest plan of `modules`, which run one at a time, each
  // from where the first starts (an encoder's layers, which differ under reuse).
  template <class Modules>
  static void plan_largest(const Modules& modules, arena& a, const batch_shape& shape, int threads) {
    for (const auto& m : modules) {
      const std::size_t start = a.mark();
      static_cast<void>(m.plan(a, shape, threads));
      a.release(start);
    }
  }
  template <class Module, class... Args>
  static void run(const Module& m, Args&&... args) {
    m.run(std::forward<Args>(args)...);
  }
  template <class Module, class... Args>
  static void execute(const Module& m, Args&&... args) {
    m.execute(std::forward<Args>(args)...);
  }

  // An attention module's stages, for a caller that runs its own attention
  // core between them (the decoder, against its key/value cache): the
  // projections, the routing of its relative-position bias, the logits'
  // scale, and the output projection.
  template <class Attention, class... Args>
  static auto project(const Attention& m, Args&&... args) {
    return m.project(std::forward<Args>(args)...);
  }
  template <class Attention, class... Args>
  static auto operands(const Attention& m, Args&&... args) {
    return m.operands(std::forward<Args>(args)...);
  }
  template <class Attention, class Routing>
  static void route_relative_bias(const Attention& m, Routing& routing) {
    m.route_relative_bias(routing);
  }
  template <class Attention>
  static auto scale(const Attention& m) {
    return m.scale();
  }
  template <class Attention, class... Args>
  static void finish(const Attention& m, Args&&... args) {
    m.finish(std::forward<Args>(args)...);
  }
};

template <class Derived, class T>
class forward_interface {
 public:
  // Exact workspace bytes for a forward pass of [batch, seq, d] on `threads`
  // threads (with or without a mask, computing or skipping padding). Throws
  // reuseformer::error unless batch, seq, threads >= 1 and the sizes are
  // representable (the largest buffers hold B*N*N values per head, so an absurd
  // N must fail here, not overflow).
  [[nodiscard]] std::size_t workspace_bytes(index_t batch, index_t seq, int threads = 1) const {
    require(batch >= 1 && seq >= 1 && threads >= 1, "workspace: expected batch, seq and threads >= 1, found batch ",
            batch, ", seq ", seq, ", threads ", threads);
    return planned_bytes(padded_mask_bytes(batch, seq), batch_shape::dense(batch, seq), threads);
  }

  // Exact workspace bytes for a forward pass of the packed batch of `offsets`
  // (B + 1 sequence offsets, as forward takes them) on `threads` threads. It
  // depends on the lengths only through B, the longest length, T and the sum
  // of squared lengths, and is never more than workspace_bytes(B, longest).
  // Throws reuseformer::error on offsets forward would refuse, threads < 1, or
  // sizes that cannot be addressed.
  [[nodiscard]] std::size_t workspace_bytes(std::span<const index_t> offsets, int threads = 1) const {
    const batch_shape shape = packed_shape(offsets);
    require(threads >= 1, "workspace: expected threads >= 1, found ", threads);
    return planned_bytes(0, shape, threads);
  }

  // A workspace for passes up to [batch, seq, d] on `threads` threads (it also
  // serves every packed batch of at most `batch` sequences of at most `seq`
  // tokens). Reuse it: forward() calls that fit allocate nothing. `limit_bytes`
  // caps what the caller lets it take: a larger need throws reuseformer::error
  // before anything is allocated (so does a failed allocation).
  [[nodiscard]] workspace make_workspace(index_t batch, index_t seq, int threads = 1,
                                         std::size_t limit_bytes = std::numeric_limits<std::size_t>::max()) const {
    const std::size_t bytes = workspace_bytes(batch, seq, threads);
    require(bytes <= limit_bytes, "workspace: batch ", batch, ", seq ", seq, " on ", threads, " threads needs ", bytes,
            " bytes, over the limit of ", limit_bytes, " bytes");
    return workspace(bytes, threads);
  }
  // A workspace for the packed batch of `offsets` (and any other whose B,
  // longest length, T and sum of squared lengths are no larger).
  [[nodiscard]] workspace make_workspace(std::span<const index_t> offsets, int threads = 1,
                                         std::size_t limit_bytes = std::numeric_limits<std::size_t>::max()) const {
    const std::size_t bytes = workspace_bytes(offsets, threads);
    require(bytes <= limit_bytes, "workspace: ", offsets.size() - 1, " sequences of ", offsets.back(), " tokens on ",
            threads, " threads need ", bytes, " bytes, over the limit of ", limit_bytes, " bytes");
    return workspace(bytes, threads);
  }

  // output = f(input) for input, output [B, N, d] (d = hidden_size()).
  // `mask` is Hugging Face's attention_mask [B, N] (1 = token, 0 = padding), or
  // none. A residual module's output may be the input itself (in place); a
  // non-residual module's output must not overlap its input.
  // Throws reuseformer::error on a wrong shape, B or N < 1, a mask of the wrong
  // shape or with values other than 0/1, or a workspace smaller than
  // workspace_bytes(B, N, ws.threads()). Allocates no memory.
  // `io` optionally supplies reused heads and receives every layer's attention
  // probabilities (see attention_io); its views are checked like the others.
  void forward(tensor_view<const T, 3> input, tensor_view<T, 3> output, workspace& ws, const attention_mask& mask = {},
               const attention_io<T>& io = {}) const {
    const index_t batch = input.extent(0), seq = input.extent(1);
    require_dense(input, output, ws);
    require_io(io, {batch, first_reused_heads(), seq, seq}, {batch, self().heads(), seq, seq});
    require_separate(input.data(), output.data(), input.size());

    // The mask is checked (and converted) before the output is touched, so a
    // rejected call leaves the caller's output as it was.
    arena a = ws.make_arena();
    const auto [mask_buffer, buffers] =
        plan_all(a, padded_mask_bytes(batch, seq), batch_shape::dense(batch, seq), ws.threads());
    T* const additive = reinterpret_cast<T*>(mask_buffer);
    if (mask.present()) mask.to_additive(batch, seq, additive);
    execute(input.data(), output.data(), input.size(), sequences::dense(batch, seq),
            mask.present() ? additive : nullptr, buffers, io);
  }

  // As above with a choice of what to do with padding (see `padding`). With
  // padding::skip, the mask's rows must be right-padded (no mask: no padding),
  // there is no attention_io, and the cost follows the real tokens. Throws as
  // above, and on a row that is not right-padded. Allocates no memory; the
  // workspace is the same as for padding::compute.
  void forward(tensor_view<const T, 3> input, tensor_view<T, 3> output, workspace& ws, const attention_mask& mask,
               padding mode) const {
    // A static_assert, not a requires-clause: Derived is incomplete where this
    // base is instantiated, and Clang checks a member's constraints there.
    static_assert(Derived::residual, "padding::skip needs a residual module (encoder layer, encoder)");
    if (mode == padding::compute) return forward(input, output, ws, mask);
    const index_t batch = input.extent(0), seq = input.extent(1), d = self().hidden_size();
    require_dense(input, output, ws);
    require(first_reused_heads() == 0,
            "padding::skip: expected a module whose first layer reuses no head (it takes no attention_io), found ",
            first_reused_heads(), " reused heads");
    require_separate(input.data(), output.data(), input.size());

    arena a = ws.make_arena();
    index_t* const offsets = reinterpret_cast<index_t*>(a.take<std::byte>(padded_mask_bytes(batch, seq)));
    if (mask.present()) {
      mask.to_offsets(batch, seq, offsets);
    } else {
      for (index_t b = 0; b <= batch; ++b) offsets[b] = b * seq;
    }
    const sequences packed = sequences::packed({offsets, static_cast<std::size_t>(batch) + 1});
    // Real rows to the front of the output (each moves up, or stays) ...
    const T* const in = input.data();
    T* const out = output.data();
    for (index_t b = 0; b < batch; ++b)
      if (out + packed.start(b) * d != in + b * seq * d)
        std::copy(in + b * seq * d, in + (b * seq + packed.length(b)) * d, out + packed.start(b) * d);
    if (packed.tokens() > 0) {
      const auto buffers = module_access::plan(self(), a, packed.shape(), ws.threads());
      module_access::run(self(), out, out, packed, nullptr, buffers, attention_io<T>{});
    }
    // ... and back to their places (each moves down, so the last sequence goes
    // first), padding zeroed.
    for (index_t b = batch - 1; b >= 0; --b) {
      T* const row = out + b * seq * d;
      const index_t length = packed.length(b);
      if (out + packed.start(b) * d != row)
        std::copy_backward(out + packed.start(b) * d, out + (packed.start(b) + length) * d, row + length * d);
      std::fill(row + length * d, row + seq * d, T(0));
    }
  }

  // output = f(tokens) for the packed batch tokens, output [T, d]: B sequences
  // laid end to end, sequence b being rows offsets[b] .. offsets[b+1] - 1
  // (`offsets` holds B + 1 values: 0, non-decreasing, ending at T; a sequence
  // may be empty). Each sequence attends within itself only (and causally under
  // a causal mask), exactly as it would alone or padded in a dense batch, and
  // nothing is computed for padding. A residual module's output may be its
  // input (in place); a non-residual module's must not overlap it.
  // `io` as for the dense form, in the packed layout (packed_attention_io).
  // Throws reuseformer::error on a wrong shape, invalid offsets (naming the
  // entry, expected and found), or a workspace smaller than
  // workspace_bytes(offsets, ws.threads()). Allocates no memory.
  void forward(tensor_view<const T, 2> tokens, tensor_view<T, 2> output, std::span<const index_t> offsets,
               workspace& ws, const packed_attention_io<T>& io = {}) const {
    const index_t count = tokens.extent(0), d = self().hidden_size();
    require_shape(tokens, {count, d}, "input");
    require_shape(output, {count, d}, "output");
    require_offsets(offsets, count);
    const sequences batch = sequences::packed(offsets);
    const index_t squares = batch.shape().squares;
    require_io(io, {first_reused_heads() * squares}, {self().heads() * squares});
    const std::size_t needed = planned_bytes(0, batch.shape(), ws.threads());
    require(ws.size_bytes() >= needed, "workspace: expected at least ", needed, " bytes for ", batch.batch(),
            " sequences of ", count, " tokens (longest ", batch.max_length(), "), threads ", ws.threads(), ", found ",
            ws.size_bytes());
    require_separate(tokens.data(), output.data(), tokens.size());
    if (count == 0) return;

    arena a = ws.make_arena();
    const auto buffers = plan_all(a, 0, batch.shape(), ws.threads()).second;
    execute(tokens.data(), output.data(), tokens.size(), batch, nullptr, buffers, io);
  }

 private:
  [[nodiscard]] const Derived& self() const { return static_cast<const Derived&>(*this); }
  [[nodiscard]] index_t first_reused_heads() const { return self().first_reused_heads(); }

  // A padded call reserves one buffer before the module's plan: the additive
  // mask [B*N], or with padding::skip the offsets [B+1] the mask becomes. It is
  // sized for both, so that one workspace serves both.
  [[nodiscard]] static std::size_t padded_mask_bytes(index_t batch, index_t seq) {
    return std::max(static_cast<std::size_t>(batch * seq) * sizeof(T),
                    static_cast<std::size_t>(batch + 1) * sizeof(index_t));
  }

  // The mask buffer (none for a packed call), then the module's own plan.
  auto plan_all(arena& a, std::size_t mask_bytes, const batch_shape& shape, int threads) const {
    std::byte* mask = a.take<std::byte>(static_cast<index_t>(mask_bytes));
    auto buffers = module_access::plan(self(), a, shape, threads);
    return std::pair{mask, buffers};
  }

  [[nodiscard]] std::size_t planned_bytes(std::size_t mask_bytes, const batch_shape& shape, int threads) const {
    const double largest = double(shape.tokens) * double(std::max(shape.max_length, self().hidden_size())) *
                           double(self().heads() + 8) * double(threads) * sizeof(T);
    require(largest < 0x1p60, "workspace: batch ", shape.batch, ", seq ", shape.max_length, " on ", threads,
            " threads needs more memory than can be addressed");
    arena measure;
    plan_all(measure, mask_bytes, shape, threads);
    return measure.high_water();
  }

  // The checks of a dense call: shapes and the workspace.
  void require_dense(const tensor_view<const T, 3>& input, const tensor_view<T, 3>& output, const workspace& ws) const {
    const index_t batch = input.extent(0), seq = input.extent(1), d = self().hidden_size();
    require(batch >= 1, "input: expected batch size >= 1, found ", batch);
    require(seq >= 1, "input: expected sequence length >= 1, found ", seq);
    require_shape(input, {batch, seq, d}, "input");
    require_shape(output, {batch, seq, d}, "output");
    const std::size_t needed = workspace_bytes(batch, seq, ws.threads());
    require(ws.size_bytes() >= needed, "workspace: expected at least ", needed, " bytes for batch ", batch, ", seq ",
            seq, ", threads ", ws.threads(), ", found ", ws.size_bytes());
  }

  // The caller's probability tensors have the shapes given (reused heads only
  // when the first layer reuses some).
  template <std::size_t Rank>
  void require_io(const attention_io<T, Rank>& io, const std::array<index_t, Rank>& reused,
                  const std::array<index_t, Rank>& attentions) const {
    if (first_reused_heads() > 0)
      require_shape(io.reused, reused, "reused attention probabilities");
    else if (!io.reused.empty())
      throw error(concat("reused attention probabilities: expected none (the first layer reuses no head), found shape ",
                         format_shape(io.reused.shape())));
    if (!io.attentions.empty()) {
      require(static_cast<index_t>(io.attentions.size()) == self().attention_layers(), "attentions: expected ",
              self().attention_layers(), " views (one per attention layer), found ", io.attentions.size());
      for (const tensor_view<T, Rank>& layer : io.attentions) require_shape(layer, attentions, "attentions");
    }
  }

  // `count` elements out from in: the same memory (residual modules) or none of it.
  static void require_separate(const T* in, const T* out, index_t count) {
    const bool disjoint = detail::disjoint(in, out, count);
    if constexpr (Derived::residual)
      require(out == in || disjoint, "output: expected the input itself or memory that does not overlap it");
    else
      require(disjoint, "output: expected memory that does not overlap the input");
  }

  // output = f(input) over `count` elements: the residual copy or the zeroed
  // output, then the module.
  template <std::size_t Rank>
  void execute(const T* in, T* out, index_t count, const sequences& batch, const T* additive_mask, const auto& buffers,
               const attention_io<T, Rank>& io) const {
    if constexpr (Derived::residual) {
      if (out != in) std::copy(in, in + count, out);
    } else {
      std::fill(out, out + count, T(0));
    }
    module_access::run(self(), Derived::residual ? out : in, out, batch, additive_mask, buffers, io);
  }
};

}  // namespace reuseformer::detail
