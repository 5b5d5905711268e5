#pragma once
// Eigen's configuration in every test program, force-included (-include) into
// each of its translation units before anything else, so that all of them see
// Eigen configured alike (Eigen is header-only: translation units that disagree
// would leave the linker free to pick either version of its inline functions).
//  - EIGEN_RUNTIME_NO_MALLOC: a test may forbid Eigen's heap allocations with
//    Eigen::internal::set_is_malloc_allowed(false). Eigen allocates with
//    malloc, which the counting operator new (allocation_counter.hpp) cannot see.
//  - eigen_assert throws, in Release builds too (where NDEBUG would silence
//    it), so a forbidden allocation or a misuse of Eigen fails the test that
//    caused it.
#include <stdexcept>

#define EIGEN_RUNTIME_NO_MALLOC
#define eigen_assert(condition) \
  ((condition) ? static_cast<void>(0) : throw std::logic_error("Eigen assertion failed: " #condition))
