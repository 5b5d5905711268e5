#pragma once
// The public interface every module shares (workspace_bytes, make_workspace,
// forward), built once from what each module plans and runs: input/output
// validation, the workspace plan, the key-padding mask conversion, and the call.
//
// A module (attention, an encoder layer, the encoder) maps a [B, N, d] tensor to a
// [B, N, d] tensor and provides, as a CRTP derived class (plan, run and buffers
// private, with forward_interface and module_access as friends):
//   static constexpr bool residual;   // output = input + f(input)  (else output = f(input))
//   index_t hidden_size() const, heads() const;
//   index_t attention_layers() const;    // attention layers inside (1 or L)
//   index_t first_reused_heads() const;  // K of the first attention layer
//   buffers plan(arena&, index_t batch, index_t seq, int threads) const;
//   void run(const T* x, T* stream, index_t batch, index_t seq, const T* additive_mask,
//            const buffers&, const attention_io<T>&) const;
// A plan is for a thread count; the buffers it returns carry it (e.g. in a
// thread_scratch), so running them needs no other.
// run() adds f(x) to `stream`, a [B*N, d] row-major matrix; for residual modules
// x is the stream itself.
// This base derives the public interface from them, so that the byte count
// reported by workspace_bytes() is the plan forward() carves, by construction.
// A module built from others (an encoder layer, the encoder) plans and runs its
// parts through module_access.

#include <algorithm>
#include <cstddef>
#include <functional>
#include <limits>
#include <span>
#include <utility>

#include "reuseformer/attention/attention_mask.hpp"
#include "reuseformer/attention/reuse_state.hpp"
#include "reuseformer/core/error.hpp"
#include "reuseformer/core/parallel.hpp"
#include "reuseformer/core/tensor_view.hpp"
#include "reuseformer/core/workspace.hpp"

namespace reuseformer::detail {

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
  template <class Module, class... Args>
  static void run(const Module& m, Args&&... args) {
    m.run(std::forward<Args>(args)...);
  }
  template <class Module, class... Args>
  static void execute(const Module& m, Args&&... args) {
    m.execute(std::forward<Args>(args)...);
  }
};

template <class Derived, class T>
class forward_interface {
 public:
  // Exact workspace bytes for a forward pass of [batch, seq, d] on `threads`
  // threads (with or without a mask). Throws reuseformer::error unless batch,
  // seq, threads >= 1 and the sizes are representable (the largest buffers
  // hold B*N*N values per head, so an absurd N must fail here, not overflow).
  [[nodiscard]] std::size_t workspace_bytes(index_t batch, index_t seq, int threads = 1) const {
    require(batch >= 1 && seq >= 1 && threads >= 1, "workspace: expected batch, seq and threads >= 1, found batch ",
            batch, ", seq ", seq, ", threads ", threads);
    const auto& self = static_cast<const Derived&>(*this);
    const double largest = double(batch) * double(seq) * double(std::max(seq, self.hidden_size())) *
                           double(self.heads() + 8) * double(threads) * sizeof(T);
    require(largest < 0x1p60, "workspace: batch ", batch, ", seq ", seq, " on ", threads,
            " threads needs more memory than can be addressed");
    arena measure;
    plan_all(measure, batch, seq, threads);
    return measure.high_water();
  }

  // A workspace for passes up to [batch, seq, d] on `threads` threads. Reuse it:
  // forward() calls that fit allocate nothing. `limit_bytes` caps what the caller
  // lets it take: a larger need throws reuseformer::error before anything is
  // allocated (so does a failed allocation).
  [[nodiscard]] workspace make_workspace(index_t batch, index_t seq, int threads = 1,
                                         std::size_t limit_bytes = std::numeric_limits<std::size_t>::max()) const {
    const std::size_t bytes = workspace_bytes(batch, seq, threads);
    require(bytes <= limit_bytes, "workspace: batch ", batch, ", seq ", seq, " on ", threads, " threads needs ", bytes,
            " bytes, over the limit of ", limit_bytes, " bytes");
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
  void forward(tensor_view<const T, 3> input, tensor_view<T, 3> output, workspace& ws,
               const attention_mask& mask = {}, const attention_io<T>& io = {}) const {
    const Derived& self = static_cast<const Derived&>(*this);
    const index_t batch = input.extent(0), seq = input.extent(1), d = self.hidden_size();
    require(batch >= 1, "input: expected batch size >= 1, found ", batch);
    require(seq >= 1, "input: expected sequence length >= 1, found ", seq);
    require_shape(input, {batch, seq, d}, "input");
    require_shape(output, {batch, seq, d}, "output");
    const index_t reused = self.first_reused_heads(), heads = self.heads();
    if (reused > 0)
      require_shape(io.reused, {batch, reused, seq, seq}, "reused attention probabilities");
    else if (!io.reused.empty())
      throw error(concat("reused attention probabilities: expected none (the first layer reuses no head), found shape ",
                         format_shape(io.reused.shape())));
    if (!io.attentions.empty()) {
      require(static_cast<index_t>(io.attentions.size()) == self.attention_layers(), "attentions: expected ",
              self.attention_layers(), " views (one per attention layer), found ", io.attentions.size());
      for (const tensor_view<T, 4>& layer : io.attentions)
        require_shape(layer, {batch, heads, seq, seq}, "attentions");
    }
    const std::size_t needed = workspace_bytes(batch, seq, ws.threads());
    require(ws.size_bytes() >= needed, "workspace: expected at least ", needed,
            " bytes for batch ", batch, ", seq ", seq, ", threads ", ws.threads(), ", found ",
            ws.size_bytes());

    const T* in = input.data();
    T* out = output.data();
    const index_t count = input.size();
    // std::less gives a total order even for pointers into different objects.
    const std::less<const T*> before;
    const bool disjoint = !before(out, in + count) || !before(in, out + count);
    if constexpr (Derived::residual)
      require(out == in || disjoint, "output: expected the input itself or memory that does not overlap it");
    else
      require(disjoint, "output: expected memory that does not overlap the input");

    // The mask is checked (and converted) before the output is touched, so a
    // rejected call leaves the caller's output as it was.
    arena a = ws.make_arena();
    const auto [additive, buffers] = plan_all(a, batch, seq, ws.threads());
    const T* mask_values = nullptr;
    if (mask.present()) {
      mask.to_additive(batch, seq, additive);
      mask_values = additive;
    }
    if constexpr (Derived::residual) {
      if (out != in) std::copy(in, in + count, out);
    } else {
      std::fill(out, out + count, T(0));
    }
    module_access::run(self, Derived::residual ? out : in, out, batch, seq, mask_values, buffers, io);
  }

 private:
  // The additive mask [B, N] (always reserved, so the size does not depend on
  // whether a mask is passed), then the module's own plan.
  auto plan_all(arena& a, index_t batch, index_t seq, int threads) const {
    T* additive = a.take<T>(batch * seq);
    auto buffers = module_access::plan(static_cast<const Derived&>(*this), a, batch, seq, threads);
    return std::pair{additive, buffers};
  }
};

// Per-thread scratch from the arena: `threads` slices of `elements`, each
// rounded up to a cache line so every slice starts aligned.
template <class T>
[[nodiscard]] thread_scratch<T> take_thread_scratch(arena& a, index_t elements, int threads) {
  const index_t stride = round_to_line<T>(elements);
  return {a.take<T>(stride * threads), stride, threads};
}

}  // namespace reuseformer::detail
