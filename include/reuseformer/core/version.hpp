#pragma once
// Library version (semantic versioning); CMake's project() version matches.

#define REUSEFORMER_VERSION_MAJOR 0
#define REUSEFORMER_VERSION_MINOR 1
#define REUSEFORMER_VERSION_PATCH 0

namespace reuseformer {
inline constexpr const char* version = "0.1.0";
}  // namespace reuseformer
