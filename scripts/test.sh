#!/usr/bin/env bash
# Builds and runs every test (all SIMD builds, examples, README example,
# downstream-consumer builds), then, where the aarch64 cross compiler and qemu
# are installed (scripts/install-deps.sh --arm64), the aarch64 suite under
# emulation (scripts/test-arm64.sh).
#   scripts/test.sh              all of it
#   scripts/test.sh --no-arm64   the native suite only (.ci/run, which runs
#                                the aarch64 subset as a stage of its own)
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
arm64=yes
case "${1:-}" in
  "") ;;
  --no-arm64) arm64=no ;;
  *) echo "usage: $script [--no-arm64]" >&2; exit 2 ;;
esac
scripts/install-deps.sh
cmake -S . -B build/test -DCMAKE_BUILD_TYPE=Release -DREUSEFORMER_WERROR=ON
cmake --build build/test -j "$jobs"
run_ctest --test-dir build/test
if [[ $arm64 == no ]]; then
  echo "aarch64 suite not run (--no-arm64)"
elif command -v aarch64-linux-gnu-g++ >/dev/null && command -v qemu-aarch64 >/dev/null; then
  scripts/test-arm64.sh
else
  echo "aarch64 suite not run: scripts/install-deps.sh --arm64 installs its cross compiler and qemu"
fi
