#!/usr/bin/env bash
# Builds and runs every test (all SIMD builds, examples, README example,
# downstream-consumer builds), then, where the aarch64 cross compiler and qemu
# are installed (scripts/install-deps.sh --arm64), the aarch64 suite under
# emulation (scripts/test-arm64.sh). Usage: scripts/test.sh
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
scripts/install-deps.sh
cmake -S . -B build/test -DCMAKE_BUILD_TYPE=Release -DREUSEFORMER_WERROR=ON
cmake --build build/test -j "$jobs"
run_ctest --test-dir build/test
if command -v aarch64-linux-gnu-g++ >/dev/null && command -v qemu-aarch64 >/dev/null; then
  scripts/test-arm64.sh
else
  echo "aarch64 suite not run: scripts/install-deps.sh --arm64 installs its cross compiler and qemu"
fi
