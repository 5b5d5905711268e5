#pragma once
// Caller-owned scratch memory for forward passes, and the arena that carves it.
//
// Every temporary of a forward pass lives in a workspace. A layer describes its
// temporaries once, in a `plan` function written against `arena`; running that
// plan on a measuring arena (no memory) yields the exact byte count, and running
// it on a workspace's memory yields the pointers. One piece of code serves both,
// so the size reported before the first call is, by construction, the size used.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>

#include "reuseformer/core/error.hpp"
#include "reuseformer/core/tensor_view.hpp"

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace reuseformer {

// Alignment of every carved buffer: one cache line, which is also the widest
// SIMD register (AVX-512), so packed GEMM panels load aligned vectors.
inline constexpr std::size_t workspace_alignment = 64;

// `elements` rounded up to whole cache lines of T, so that what follows starts aligned.
template <class T>
[[nodiscard]] constexpr index_t round_to_line(index_t elements) {
  constexpr index_t line = static_cast<index_t>(workspace_alignment / sizeof(T));
  return (elements + line - 1) / line * line;
}

namespace detail {

// Memory a model keeps (packed weights) or reuses for every pass (a
// workspace). A buffer of at least one huge page is aligned to 2 MiB and, on
// Linux, advised as transparent huge pages (a hint, honoured when the system
// allows it): the weights are streamed from memory on every forward pass, and
// with 4 KiB pages each page costs a TLB miss and stops the hardware
// prefetchers at its boundary.
inline constexpr std::size_t huge_page_bytes = std::size_t{2} << 20;

[[nodiscard]] constexpr std::size_t buffer_alignment(std::size_t bytes) {
  return bytes >= huge_page_bytes ? huge_page_bytes : workspace_alignment;
}

// Frees what allocate_buffer() returned for `bytes` bytes.
struct buffer_delete {
  std::size_t bytes = 0;
  void operator()(void* p) const { ::operator delete(p, std::align_val_t{buffer_alignment(bytes)}); }
};

template <class E>
using buffer_ptr = std::unique_ptr<E, buffer_delete>;

// `bytes` > 0 uninitialised bytes for elements of the trivial type E, or null
// when the memory cannot be had (the nothrow form: the callers turn a refusal
// into the library's error, also under AddressSanitizer, which aborts on a
// failing throwing new).
template <class E>
[[nodiscard]] buffer_ptr<E> allocate_buffer(std::size_t bytes) {
  void* p = ::operator new(bytes, std::align_val_t{buffer_alignment(bytes)}, std::nothrow);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (p != nullptr && bytes >= huge_page_bytes) ::madvise(p, bytes / huge_page_bytes * huge_page_bytes, MADV_HUGEPAGE);
#endif
  return buffer_ptr<E>(static_cast<E*>(p), buffer_delete{bytes});
}

}  // namespace detail

// Bump allocator over a byte range. With a null base it only measures.
class arena {
 public:
  // A measuring arena: take() returns null and only the high-water mark moves.
  arena() = default;
  arena(std::byte* base, std::size_t capacity) : base_(base), capacity_(capacity) {}

  // Requires: count >= 0. Returns `count` elements aligned to workspace_alignment
  // (null when measuring). Throws reuseformer::error if a real arena overflows,
  // which only happens when the caller passes a workspace smaller than planned.
  template <class T>
  [[nodiscard]] T* take(index_t count) {
    const std::size_t start = round_up(used_);
    const std::size_t end = start + static_cast<std::size_t>(count) * sizeof(T);
    if (base_ != nullptr)
      detail::require(end <= capacity_, "workspace: expected at least ", end, " bytes, found ", capacity_);
    used_ = end;
    high_water_ = std::max(high_water_, used_);
    return base_ == nullptr ? nullptr : reinterpret_cast<T*>(base_ + start);
  }

  // mark()/release() let two phases of a pass overlap: release(m) makes the bytes
  // taken since mark m reusable; the high-water mark still counts them.
  [[nodiscard]] std::size_t mark() const { return used_; }
  void release(std::size_t mark) { used_ = mark; }

  // Bytes needed by everything taken so far, overlaps accounted for.
  [[nodiscard]] std::size_t high_water() const { return round_up(high_water_); }

 private:
  static std::size_t round_up(std::size_t n) {
    return (n + workspace_alignment - 1) / workspace_alignment * workspace_alignment;
  }

  std::byte* base_ = nullptr;
  std::size_t capacity_ = 0;
  std::size_t used_ = 0;
  std::size_t high_water_ = 0;
};

// An aligned byte buffer plus the thread count the forward pass may use.
// Create it once (usually through a model's make_workspace) and reuse it for
// every call of the same or a smaller shape: reuse is what makes a steady-state
// forward pass allocation-free. Not shareable between concurrent calls.
class workspace {
 public:
  workspace() = default;

  // Allocates `bytes` bytes (aligned to workspace_alignment) for passes that run
  // on `threads` threads. Throws reuseformer::error when threads < 1 or the
  // memory cannot be allocated.
  workspace(std::size_t bytes, int threads) : threads_(threads), bytes_(bytes) {
    detail::require(threads >= 1, "workspace: expected threads >= 1, found ", threads);
    if (bytes_ == 0) return;
    memory_ = detail::allocate_buffer<std::byte>(bytes_);
    detail::require(memory_ != nullptr, "workspace: cannot allocate ", bytes_, " bytes");
  }

  [[nodiscard]] std::size_t size_bytes() const { return bytes_; }
  [[nodiscard]] int threads() const { return threads_; }

  // An arena over the whole buffer, for one forward pass.
  [[nodiscard]] arena make_arena() { return arena(memory_.get(), bytes_); }

 private:
  int threads_ = 1;
  std::size_t bytes_ = 0;
  detail::buffer_ptr<std::byte> memory_;
};

}  // namespace reuseformer
