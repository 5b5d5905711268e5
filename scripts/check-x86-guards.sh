#!/usr/bin/env bash
# Fails if a raw x86 intrinsic appears in the project's C++ outside code
# guarded for x86, so that no other architecture (aarch64) meets one.
#   scripts/check-x86-guards.sh [FILE...]   (default: every tracked C++ file)
# x86-specific: _mm*/_MM_* intrinsics and macros, the __m64/__m128/__m256/
# __m512 types, __mmask*, AMX _tile_*, <*mmintrin.h> headers, __builtin_ia32_*
# and __builtin_cpu_* (x86 CPU detection in GCC). Guarded: inside an #if/#elif
# branch whose condition names an x86 macro (__x86_64__, __i386__, __SSE*,
# __AVX*, __FMA__, __F16C__, __AMX*, XSIMD_WITH_SSE*/AVX*/FMA*), has no `!`, and
# joins with `||` only x86 macros. Comments are not code.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
if [[ $# -gt 0 ]]; then
  files=("$@")
else
  mapfile -t files < <(git ls-files '*.hpp' '*.cpp' '*.h')
fi
awk '
function x86(name) {
  return name ~ /^(__x86_64__|__i386__|__SSE[0-9A-Z_]*__|__AVX[0-9A-Z_]*__|__FMA__|__F16C__|__AMX[0-9A-Z_]*__|XSIMD_WITH_(SSE|AVX|FMA)[0-9A-Z_]*)$/
}
# Whether an #if/#elif condition restricts its branch to x86.
function guarded(cond,    rest, name, any, other) {
  if (cond ~ /!/) return 0
  any = 0; other = 0; rest = cond
  while (match(rest, /[A-Za-z_][A-Za-z0-9_]*/)) {
    name = substr(rest, RSTART, RLENGTH); rest = substr(rest, RSTART + RLENGTH)
    if (name == "defined") continue
    if (x86(name)) any = 1; else other = 1
  }
  return any && !(other && cond ~ /\|\|/)
}
FNR == 1 { depth = 0; in_comment = 0 }
{
  line = $0
  # Comments: finish an open block comment, then drop /* ... */ and // ....
  if (in_comment) {
    if (!match(line, /\*\//)) next
    line = substr(line, RSTART + 2); in_comment = 0
  }
  gsub(/\/\*([^*]|\*+[^*\/])*\*+\//, " ", line)
  if (match(line, /\/\*/)) { line = substr(line, 1, RSTART - 1); in_comment = 1 }
  sub(/\/\/.*/, "", line)

  if (match(line, /^[ \t]*#[ \t]*(if|ifdef|ifndef|elif|else|endif)/)) {
    directive = line; sub(/^[ \t]*#[ \t]*/, "", directive)
    keyword = directive; sub(/[^a-z].*/, "", keyword)
    cond = substr(directive, length(keyword) + 1)
    if (keyword == "if" || keyword == "ifdef") guard[++depth] = guarded(cond)
    else if (keyword == "ifndef") guard[++depth] = 0
    else if (keyword == "elif") guard[depth] = guarded(cond)
    else if (keyword == "else") guard[depth] = 0
    else if (keyword == "endif") depth--
    next
  }
  if (line !~ /(^|[^A-Za-z0-9_])(_mm[0-9]*_|_MM_|__m(64|128|256|512)|__mmask|_tile_|__builtin_ia32_|__builtin_cpu_)|[a-z]*mmintrin\.h/) next
  for (d = 1; d <= depth; ++d) if (guard[d]) next
  printf "%s:%d: x86 intrinsic outside an x86 guard: %s\n", FILENAME, FNR, $0
  found = 1
}
END { exit found }
' "${files[@]}" || {
  echo "Guard it (#if defined(__AVX2__), XSIMD_WITH_AVX, ...) or write it with xsimd." >&2
  exit 1
}
echo "x86 intrinsics: all ${#files[@]} C++ files keep them behind x86 guards"
