#pragma once
// Per-thread scratch memory of a parallel kernel, carved from a workspace.

#include "reuseformer/core/tensor_view.hpp"
#include "reuseformer/core/workspace.hpp"

namespace reuseformer {

// Per-thread scratch memory of a parallel kernel and the threads it serves:
// `threads` slices of `stride` elements from `data`; thread t works in
// slice(t) only, so no two threads share a byte. Kernels that state a scratch
// size per thread require stride >= that size (and 64-byte aligned slices where
// they say so).
template <class T>
struct thread_scratch {
  T* data = nullptr;
  index_t stride = 0;
  int threads = 1;

  [[nodiscard]] T* slice(int thread) const { return data + thread * stride; }
};

namespace detail {

// Per-thread scratch from the arena: `threads` slices of `elements`, each
// rounded up to a cache line so every slice starts aligned.
template <class T>
[[nodiscard]] thread_scratch<T> take_thread_scratch(arena& a, index_t elements, int threads) {
  const index_t stride = round_to_line<T>(elements);
  return {a.take<T>(stride * threads), stride, threads};
}

}  // namespace detail

}  // namespace reuseformer
