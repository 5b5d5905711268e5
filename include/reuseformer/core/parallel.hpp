#pragma once
// The library's only threading primitive: a loop over independent tasks.
//
// Built with OpenMP (the CMake option REUSEFORMER_OPENMP, or any -fopenmp build)
// the tasks run on up to `threads` threads; without it they run in order on the
// calling thread. Matrix products split their work through it too (one
// sequential blocked product per task), so the thread count the user sets is
// the number of cores used, with no nesting.

#include <algorithm>

#include "reuseformer/core/tensor_view.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace reuseformer {

// Threads a forward pass can use on this build: omp_get_max_threads() with
// OpenMP, 1 without.
[[nodiscard]] inline int max_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

// Calls body(task, thread) for task in [0, tasks), thread in [0, threads).
// Tasks are handed out dynamically; each thread index is used by one thread at a
// time, so it can select per-thread scratch. `body` must not throw.
template <class Body>
void parallel_for(index_t tasks, int threads, Body&& body) {
  threads = static_cast<int>(std::min<index_t>(std::max(threads, 1), std::max<index_t>(tasks, 1)));
#ifdef _OPENMP
  if (threads > 1) {
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
    for (index_t task = 0; task < tasks; ++task) body(task, omp_get_thread_num());
    return;
  }
#endif
  for (index_t task = 0; task < tasks; ++task) body(task, 0);
}

}  // namespace reuseformer
