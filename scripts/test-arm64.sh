#!/usr/bin/env bash
# Cross-builds the aarch64 (NEON) suite (cmake --preset arm64: the library's
# tests in the neon and nosimd builds, the examples and reuseformer-encode, with
# warnings as errors) and runs it under qemu-aarch64.
#   scripts/test-arm64.sh            every test (scripts/test.sh runs this when
#                                    the cross compiler is installed)
#   scripts/test-arm64.sh --ci       the subset .ci/run runs (see SUBSET below)
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
scripts/install-deps.sh --arm64
cmake --preset arm64 >/dev/null
ctest_args=()
if [[ "${1:-}" == "--ci" ]]; then
  # SUBSET: the NEON build's every numerical test (tests_neon: the kernels
  # against their scalar references, the layers against the double reference
  # and the PyTorch fixtures), the error messages (tests_errors) and the
  # tool's PyTorch parity and errors (tests_tool): the code that differs by
  # target. Left to scripts/test.sh, to keep CI within its time: tests_nosimd
  # (the scalar path, the same C++ on every target, which CI runs on x86-64)
  # and the programs that do not depend on the instruction set (file formats,
  # fuzz regressions, concurrency, long sequences, cost model, allocation
  # counts, examples, packaging), which the x86-64 suite runs in full.
  cmake --build build/arm64 -j "$jobs" --target tests_neon tests_errors tests_tool
  # tests_neon runs as two ctest entries (tests/CMakeLists.txt, SPLIT_TAG), one per core.
  ctest_args=(-R '^(tests_neon_gemm|tests_neon_rest|tests_errors|tests_tool)$')
else
  cmake --build build/arm64 -j "$jobs"
fi
run_ctest --test-dir build/arm64 "${ctest_args[@]}"
