#pragma once
// Counts heap allocations two ways: a replaced global operator new (all C++
// allocations, ours and the standard library's), and Eigen's runtime no-malloc
// switch (Eigen allocates with std::malloc, which operator new does not see).
// Include it first, before any Eigen or reuseformer header, in one translation
// unit of a test program.
#include <atomic>
#include <utility>

#include "examples/support/counting_new.hpp"

namespace reuseformer_test {
inline std::atomic<long> eigen_mallocs{0};
}  // namespace reuseformer_test

// Eigen calls eigen_assert(is_malloc_allowed() && "...") before each heap
// allocation when EIGEN_RUNTIME_NO_MALLOC is defined; count instead of aborting.
#define EIGEN_RUNTIME_NO_MALLOC
#define eigen_assert(x)                            \
  do {                                             \
    if (!(x)) ++reuseformer_test::eigen_mallocs;   \
  } while (false)

// Through the library: it includes Eigen with the GCC 12 warning workaround in place.
#include <reuseformer/gemm/gemm.hpp>

namespace reuseformer_test {

// Allocations made by `f`: {by operator new, by Eigen}.
template <class F>
std::pair<long, long> count_allocations(F&& f) {
  counting::allocations = 0;
  eigen_mallocs = 0;
  Eigen::internal::set_is_malloc_allowed(false);
  counting::enabled = true;
  f();
  counting::enabled = false;
  Eigen::internal::set_is_malloc_allowed(true);
  return {counting::allocations.load(), eigen_mallocs.load()};
}

}  // namespace reuseformer_test
