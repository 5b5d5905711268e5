#pragma once
// Counts heap allocations with a replaced global operator new (all C++
// allocations, ours and the standard library's). Include it in one translation
// unit of a test program.
#include "examples/support/counting_new.hpp"

namespace reuseformer_test {

// Allocations made by `f` through operator new.
template <class F>
long count_allocations(F&& f) {
  counting::allocations = 0;
  counting::enabled = true;
  f();
  counting::enabled = false;
  return counting::allocations.load();
}

}  // namespace reuseformer_test
