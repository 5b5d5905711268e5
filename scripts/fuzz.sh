#!/usr/bin/env bash
# Coverage-guided fuzzing of the library's input parsers with libFuzzer
# (fuzz/README.md): builds fuzz/ with clang into build/fuzz, runs every target
# for SECONDS (default 60), one per core at a time, on a copy of its seed
# corpus (build/fuzz/corpus, which grows from run to run; the repository is not
# written), and prints one line per target. Exits 1 when a target produced a crash, leak, timeout or
# out-of-memory artifact (in build/fuzz/artifacts/<target>/).
#   scripts/fuzz.sh [SECONDS]
# Needs clang and libclang-rt-14-dev (libFuzzer): as root it apt-gets what is
# missing; otherwise it prints the command and exits 1.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"

seconds=${1:-60}
if [[ $# -gt 1 || ! "$seconds" =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: scripts/fuzz.sh [SECONDS]   (each target runs SECONDS, default 60)" >&2
  exit 2
fi

build=$root/build/fuzz
targets=(fuzz_safetensors fuzz_config_json fuzz_model_input fuzz_bert_model)

"$root/scripts/install-deps.sh" --fuzz
cxx=$(command -v clang++-14 || command -v clang++)

quiet "$build/logs/configure.log" cmake -S "$root/fuzz" -B "$build" -DCMAKE_CXX_COMPILER="$cxx"
quiet "$build/logs/build.log" cmake --build "$build" -j "$jobs"

export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# run_target TARGET: one fuzzing run, its output in its log and its exit
# status in logs/TARGET.status.
run_target() {
  local target=$1 rc=0
  local corpus=$build/corpus/$target artifacts=$build/artifacts/$target
  rm -rf "$artifacts"  # this run's findings only
  mkdir -p "$corpus" "$artifacts"
  cp "$root/fuzz/corpus/$target/"* "$corpus/"
  "$build/$target" "$corpus" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
    -artifact_prefix="$artifacts/" -print_final_stats=1 >"$build/logs/$target.log" 2>&1 || rc=$?
  echo "$rc" >"$build/logs/$target.status"
}
# One target per core at a time (each fuzzer is one process on one core).
for ((i = 0; i < ${#targets[@]}; i += jobs)); do
  for target in "${targets[@]:i:jobs}"; do run_target "$target" & done
  wait
done

failed=0
for target in "${targets[@]}"; do
  corpus=$build/corpus/$target
  artifacts=$build/artifacts/$target
  log=$build/logs/$target.log
  rc=$(cat "$build/logs/$target.status")
  # The final stats, or (a run that stopped at a finding prints none) the last status line.
  executions=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  [[ -n "$executions" ]] || executions=$(grep -oE '^#[0-9]+' "$log" | tail -n 1 | tr -d '#' || true)
  inputs=$(find "$corpus" -type f | wc -l)
  found=$(find "$artifacts" -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \) | wc -l)
  echo "$target: ${executions:-?} executions, corpus $inputs inputs, $found crashes"
  if [[ $rc -ne 0 || $found -ne 0 ]]; then
    failed=1
    echo "  exit status $rc; log: $log" >&2
    grep -E -A 12 '^==[0-9]+==ERROR|runtime error|^terminate called|ERROR: libFuzzer' "$log" | head -n 40 >&2 || true
    find "$artifacts" -type f | while read -r artifact; do
      echo "  artifact: $artifact (replay: $build/$target $artifact)" >&2
    done
  fi
done
exit $failed
