#pragma once
// The process's resident set now and at its peak (Linux: /proc/self/statm
// pages, getrusage KiB): a loaded model's real footprint, mapped files included.
// Shared by the tools' reports (reuseformer-encode, reuseformer-plan) and the
// comparison harness.
#include <cstddef>
#include <fstream>

#include <sys/resource.h>
#include <unistd.h>

namespace resident_memory {

inline std::size_t current_bytes() {
  std::size_t pages = 0, resident = 0;
  std::ifstream("/proc/self/statm") >> pages >> resident;
  return resident * static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
}

inline std::size_t peak_bytes() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<std::size_t>(usage.ru_maxrss) * 1024;
}

}  // namespace resident_memory
