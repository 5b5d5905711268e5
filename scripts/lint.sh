#!/usr/bin/env bash
# The tree's formatting and lint: every tracked C++ file as .clang-format lays
# it out (clang-format-16), and the .clang-tidy checks (clang-tidy-14) over the
# programs users copy and run: the tools and the examples.
#   scripts/lint.sh          check (exit 1 on a difference or a finding)
#   scripts/lint.sh --fix    reformat the files in place instead of checking
# Needs the packages of scripts/install-deps.sh --lint (installed first).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
fix=no
case "${1:-}" in
  "") ;;
  --fix) fix=yes ;;
  *) echo "usage: $script [--fix]" >&2; exit 2 ;;
esac
scripts/install-deps.sh --lint
mapfile -t files < <(git ls-files '*.hpp' '*.cpp' '*.h')
if [[ $fix == yes ]]; then
  clang-format-16 -i "${files[@]}"
  exit 0
fi
clang-format-16 --dry-run --Werror "${files[@]}" || {
  echo "$script: run scripts/lint.sh --fix to lay these files out as .clang-format says" >&2
  exit 1
}
echo "format: all ${#files[@]} C++ files as .clang-format lays them out"

# The compile commands of a configured (not built) tree tell clang-tidy each
# file's flags.
quiet build/logs/lint-configure.log cmake -S . -B build/lint -DCMAKE_BUILD_TYPE=Release -DCMAKE_EXPORT_COMPILE_COMMANDS=ON
mapfile -t programs < <(git ls-files 'tools/*.cpp' 'examples/*.cpp')
printf '%s\n' "${programs[@]}" | xargs -P "$jobs" -n 1 clang-tidy-14 -p build/lint --quiet
echo "clang-tidy: ${#programs[@]} programs and the headers they include, clean"
