#!/usr/bin/env bash
# The test suite under sanitizers:
#   1. every test, built with the debug-sanitize preset (AddressSanitizer with
#      leak detection + UndefinedBehaviorSanitizer, every finding fatal) into
#      build/debug-sanitize. Three kinds are left to scripts/test.sh: the
#      benchmarks' smoke runs (timing harnesses around the code the tests
#      cover; the preset does not build them), the consumer_* tests, which
#      install the package and build a downstream project (CMake packaging,
#      nothing of ours runs instrumented), and the example_* runs of the
#      example programs (short users' programs calling the entry points the
#      tests exercise; instrumented, they are a tenth of this build's compile
#      work). The reuseformer-encode tool is built and run here, by tests_tool;
#   2. the tests that exercise threads and shared readers (ctest names matching
#      "concurrency|tests_io|tests_checkpoint"), built with the tsan preset
#      (ThreadSanitizer) into build/tsan. OpenMP is off there: libgomp is not
#      TSan-instrumented, so its barriers would be reported as races; the
#      tests' own threads remain.
# Both parts run even if the first has failing tests; the exit status is
# non-zero if a build failed (at once) or any test failed.
#   scripts/sanitize.sh
# Needs the packages of scripts/install-deps.sh (it is run first).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
scripts/install-deps.sh
asan_skipped='^(consumer|example)_'
tsan_tests='concurrency|tests_io|tests_checkpoint'

start=$SECONDS
echo "ASan + UBSan (build/debug-sanitize): building the test programs"
quiet build/logs/sanitize-configure.log cmake --preset debug-sanitize
# One target that depends on every test program: make builds the targets named
# on its command line one after another, each on all cores only as far as its
# own sources allow (one unity source for the largest).
quiet build/logs/sanitize-build.log cmake --build --preset debug-sanitize -j "$jobs" --target reuseformer_test_programs
echo "ASan + UBSan: running ctest"
# allocator_may_return_null: tests check that an allocation the system refuses
# becomes a reuseformer::error; with it, a nothrow operator new returns null
# under ASan instead of aborting (a throwing one aborts either way).
failed=()
ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  run_ctest --preset debug-sanitize -E "$asan_skipped" || failed+=("ASan + UBSan")
echo "ASan + UBSan: done ($((SECONDS - start)) s)"

start=$SECONDS
echo "TSan (build/tsan): building the tests matching '$tsan_tests'"
quiet build/logs/tsan-configure.log cmake --preset tsan
# Only the programs behind the selected tests (a test's name is its program's).
mapfile -t selected < <(ctest --preset tsan -N -R "$tsan_tests" | sed -n 's/^ *Test *#[0-9]*: *//p')
if [[ ${#selected[@]} -eq 0 ]]; then
  echo "scripts/sanitize.sh: no test matches '$tsan_tests'" >&2
  exit 1
fi
quiet build/logs/tsan-build.log cmake --build --preset tsan -j "$jobs" --target "${selected[@]}"
echo "TSan: running ${selected[*]}"
TSAN_OPTIONS=halt_on_error=1 run_ctest --preset tsan -R "$tsan_tests" || failed+=("TSan")
echo "TSan: done ($((SECONDS - start)) s)"

if [[ ${#failed[@]} -gt 0 ]]; then
  echo "scripts/sanitize.sh: tests failed under: ${failed[*]}" >&2
  exit 1
fi
echo "scripts/sanitize.sh: all tests passed under ASan + UBSan and TSan"
