# Cross build for 64-bit Arm Linux (aarch64, NEON) on a Debian x86-64 machine
# with Debian's g++-aarch64-linux-gnu; ctest runs the programs under
# qemu-aarch64 (scripts/install-deps.sh --arm64 installs both).
#   cmake --preset arm64    (or -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake)
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)

# Libraries (libstdc++, libgomp) come from the target's root only; headers and
# CMake packages also from the build machine's, as every dependency the
# library has is header-only (xsimd, Eigen, nlohmann_json, Catch2).
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)
# Debian installs xsimd's (architecture-independent) CMake package under the
# build machine's multiarch directory, which a search for aarch64 skips.
if(NOT DEFINED xsimd_DIR AND EXISTS /usr/lib/${CMAKE_HOST_SYSTEM_PROCESSOR}-linux-gnu/cmake/xsimd)
  set(xsimd_DIR /usr/lib/${CMAKE_HOST_SYSTEM_PROCESSOR}-linux-gnu/cmake/xsimd CACHE PATH "xsimd's CMake package")
endif()

# add_test() runs the aarch64 programs through this (the dynamic loader and
# libraries from the cross toolchain's root).
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64 -L /usr/aarch64-linux-gnu)
