#pragma once
// Counts heap allocations with a replaced global operator new (all C++
// allocations, ours and the standard library's). Include it in one translation
// unit of a test program.
#include <cstddef>

#include "support/counting_new.hpp"

namespace reuseformer_test {

// What `f` asked of operator new: how many allocations, how many bytes in all
// (whether freed since or not).
struct allocations {
  long count = 0;
  std::size_t bytes = 0;
};

template <class F>
allocations measure_allocations(F&& f) {
  counting::allocations = 0;
  counting::bytes = 0;
  counting::enabled = true;
  f();
  counting::enabled = false;
  return {counting::allocations.load(), counting::bytes.load()};
}

// Allocations made by `f` through operator new.
template <class F>
long count_allocations(F&& f) {
  return measure_allocations(f).count;
}

}  // namespace reuseformer_test
