# shellcheck shell=bash
# Sourced by the scripts in scripts/ (source "$(dirname "$0")/lib.sh"): puts
# the shell in the repository root ($root) and gives the core count ($jobs)
# and the helpers below.
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root" || exit 1
jobs=$(nproc)
# The sourcing script, as its messages name it.
script=scripts/$(basename "$0")

# quiet LOG COMMAND...: runs COMMAND with its output in LOG; if it fails,
# prints the log's end and exits 1 (a build's errors without its progress).
quiet() {
  local log=$1
  shift
  mkdir -p "$(dirname "$log")"
  if ! "$@" >"$log" 2>&1; then
    echo "$script: failed: $*" >&2
    tail -n 60 "$log" >&2
    exit 1
  fi
}

# run_ctest ARGS...: ctest with one test per core. Many tests run forward
# passes on 2 threads; OMP_WAIT_POLICY=passive keeps their OpenMP threads from
# spinning at barriers on cores the other tests need.
run_ctest() {
  OMP_WAIT_POLICY=passive ctest -j "$jobs" --output-on-failure "$@"
}
